"""Test hooks for the ranks of a torchrun cell (tests/training/test_distributed.py puts this folder on
PYTHONPATH; Python imports `sitecustomize` at start-up). Nothing happens unless the process is
the rank named by EMOGRID_HOOK_RANK:

* EMOGRID_HOOK=oom: that rank's first training step raises torch.OutOfMemoryError, as a CUDA
  allocation failure would.
* EMOGRID_HOOK=sigterm: that rank sends itself SIGTERM at the end of optimizer step
  EMOGRID_HOOK_STEP (before the step-end callbacks run), as a preemption reaching one rank first.

Deterministic (a hook at a known point, no timing), and nothing of emogrid is replaced.
"""

import os

if os.environ.get("EMOGRID_HOOK") and os.environ.get("RANK") == os.environ.get("EMOGRID_HOOK_RANK"):
    kind = os.environ["EMOGRID_HOOK"]
    if kind == "oom":
        import torch
        from transformers import Trainer

        def _oom(self, *args, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test hook)")

        Trainer.training_step = _oom
    elif kind == "sigterm":
        import signal

        from transformers import trainer_callback

        _step = int(os.environ["EMOGRID_HOOK_STEP"])
        _on_step_end = trainer_callback.CallbackHandler.on_step_end

        def _on_step_end_with_sigterm(self, args, state, control):
            if state.global_step == _step:
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
            return _on_step_end(self, args, state, control)

        trainer_callback.CallbackHandler.on_step_end = _on_step_end_with_sigterm
