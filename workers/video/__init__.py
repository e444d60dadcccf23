"""The video worker's engine: memory-sliced text-to-video (Streamlined Inference), checkpointed
decode and export. Modules import torch/diffusers inside functions only, so ``export`` stays usable
from the GUI process."""
