"""Training and fine-tuning the Step1 TTS language model on a `stepaudio data generate` dataset.

`examples` turns dataset rows into the exact TTS-3B prompt plus the audio answer (and chooses the prompt
speaker), `batching` pads them into length-bucketed batches, `forward` computes the loss on the answer,
`lora` wraps / saves / merges adapters, `loop` runs the optimisation, `checkpoint` writes atomic
resumable checkpoints, `curves` logs the loss, `distributed` holds the torch.distributed pieces,
`export` writes the final folders, `run` is the whole job, and `memory` computes GPU memory for planning.
"""
