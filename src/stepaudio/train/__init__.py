"""Training and fine-tuning the Step1 TTS language model on a `stepaudio data generate` dataset.

`examples` turns dataset rows into the exact TTS-3B prompt plus the audio answer and a loss mask,
`batching` pads them into length-bucketed batches, `loop` runs the optimisation (full or `lora`),
`checkpoint` writes atomic resumable checkpoints, `curves` logs the loss, and `distributed` holds
the torch.distributed pieces for multi-GPU runs.
"""
