"""Models: the TDSM denoiser (DiT), the DDPM schedule, the Shift-GCN skeleton encoder, the class tables
and the folded scorer, and the folders they are saved in.

Import each name from the module that defines it (`from tdsm_edge.models.denoiser import TDSMDenoiser`);
the package itself imports nothing, so `import tdsm_edge.models` does not import torch.
"""
