"""Silence the known, harmless import-time noise of pinned dependencies, and nothing else.

Each entry is one exact message a newcomer sees on every run that says nothing about their
study; anything else those libraries log or warn still shows. Installed when `emogrid` is
imported (the CLI, the Snakefile, every job), before torch, peft or bitsandbytes load.
"""

from __future__ import annotations

import logging
import warnings

# bitsandbytes 0.50 on CPUs with AVX512-BF16 tries an optional faster 4-bit kernel from the
# hub (`kernels` package) and logs a warning when it is missing; it then uses its own CPU
# kernel, which is what emogrid's QLoRA-on-CPU tests run.
BNB_KERNELS = ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community")

# transformers 5 deprecated `is_gradient_checkpointing`; peft 0.21 still reads it in
# `get_peft_model`: a FutureWarning per adapter cell that no config change can remove.
DEPRECATED_ALIASES = (r"`is_gradient_checkpointing` is deprecated", r"transformers\.modeling_utils")


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def install() -> None:
    """Idempotent: add the filters above (once)."""
    logger_name, prefix = BNB_KERNELS
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in logger.filters):
        logger.addFilter(_DropMessage(prefix))
    message, module = DEPRECATED_ALIASES
    warnings.filterwarnings("ignore", message=message, category=FutureWarning, module=module)
