"""Stage 3, models: what a cell's model is. Owns loading a tokenizer + sequence-classification
model by hub id or local directory (`loading`), applying a method's adapter with peft
(`adapters`), and the devices, precision and GPU count of the machine (`devices`).

Reads: model files (hub cache or a directory). Writes: nothing. Both planning (on the meta
device) and training (for real) build models through it. Imports: emogrid.study.
"""
