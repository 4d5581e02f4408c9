"""colpali-engine processors without a video processor, for hosts without torchvision.

colpali-engine's Qwen2-VL processors (ColQwen2, ColQwen2.5) subclass transformers'
``Qwen2VLProcessor``, which in transformers 5 also loads a *video* processor, and that one
needs torchvision. Retrieval embeds images and text only, and torchvision is often the one
package that does not install beside a CPU build of torch (PyPI's torchvision wheels are CUDA
builds whose operators fail to load with it). So when torchvision is missing, the processor is
built from its image processor (transformers' Pillow implementation) and tokenizer, with no
video processor: the query and image processing code that runs is colpali-engine's own.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from typing import Any

__all__ = ["images_only", "load_engine_processor", "needs_images_only"]

logger = logging.getLogger(__name__)


def needs_images_only(processor_class: Any) -> bool:
    """True when ``processor_class`` takes a video processor and torchvision is missing."""
    takes_video = "video_processor" in inspect.signature(processor_class.__init__).parameters
    return takes_video and importlib.util.find_spec("torchvision") is None


def images_only(processor_class: Any, image_processor: Any, tokenizer: Any) -> Any:
    """An instance of ``processor_class`` with no video processor.

    transformers checks every constructor argument against its expected class, and looking up
    the video processor class fails without torchvision even for ``None``; a subclass skips
    that one check for a missing video processor and keeps every other check.
    """

    class _ImagesOnly(processor_class):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    _ImagesOnly.__name__ = _ImagesOnly.__qualname__ = processor_class.__name__
    return _ImagesOnly(image_processor=image_processor, tokenizer=tokenizer, video_processor=None)


def load_engine_processor(processor_class: Any, folder: str) -> Any:
    """``processor_class.from_pretrained(folder)``, or, where that needs torchvision and it is
    missing, the same processor built from the folder's image processor and tokenizer."""
    if not needs_images_only(processor_class):
        return processor_class.from_pretrained(folder)
    from transformers import AutoImageProcessor, AutoTokenizer

    logger.info(
        "torchvision is not installed: %s built without its video processor (images and text "
        "only, which is all retrieval uses)",
        processor_class.__name__,
    )
    image_processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return images_only(processor_class, image_processor, tokenizer)
