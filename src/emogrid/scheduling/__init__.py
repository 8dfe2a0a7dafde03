"""Stage 4, scheduling: how jobs get their machine. Owns each rule's resources in Snakemake's and
the SLURM plugin's vocabulary from the study config (`resources`), which GPUs a job may take
(`gpu_ids`), GPU slots as lock files (`gpu_locks`), the share ledger for packing several cells
on one GPU (`gpu_ledger`), and the `emogrid gpu-slot` command (`gpu_slots`).

Reads: the study's `resources:`, the environment (CUDA_VISIBLE_DEVICES, SLURM, EMOGRID_GPUS).
Writes: slot and ledger files under the run's lock directory. Imports: study, models.
"""
