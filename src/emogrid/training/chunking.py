"""Less padding, same gradient: a training batch forwarded as length-sorted chunks.

A random batch of 16 comments is padded to its longest comment; on CPU, time grows with the
padded tokens. Sorting the batch by length, cutting it into a few chunks and padding each chunk
only to its own longest comment feeds ~35% fewer tokens. The batch loss is the chunks' mean
losses weighted by their share of rows, which is the batch's mean loss: the same examples, the
same loss and gradient (up to float rounding and dropout masks), unlike grouping comments of
similar length into batches (emogrid.training.sampling), which changes which examples share a step.

Measured (MiniLM LoRA, batch 16, one CPU thread): 350 ms/step as one padded batch, 272 ms as 4
chunks (-22%). Not used on GPU, where small chunks underfill the device (unmeasured there).
"""

from __future__ import annotations

TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
MIN_ROWS = 4  # smaller chunks cost more in per-call overhead than they save in padding


def split_by_length(inputs: dict, max_chunks: int, min_rows: int = MIN_ROWS) -> list[dict]:
    """`inputs` (a collated batch) as up to `max_chunks` chunks of rows sorted by length, each
    trimmed to the columns where one of its rows has a real token (left or right padding)."""
    import torch

    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2:
        return [inputs]
    chunks = min(int(max_chunks), mask.shape[0] // min_rows)
    if chunks < 2:
        return [inputs]
    order = torch.argsort(mask.sum(dim=1), stable=True)
    parts = []
    for rows in torch.tensor_split(order, chunks):
        keep = mask[rows].bool().any(dim=0)
        part = {}
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == mask.shape[0]:
                value = value[rows]
                if key in TOKEN_KEYS and value.dim() == 2:
                    value = value[:, keep]
            part[key] = value
        parts.append(part)
    return parts
