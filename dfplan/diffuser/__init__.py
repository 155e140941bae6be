"""The Diffuser baseline (Janner et al. 2022): temporal U-Net model, inpainting planner, tracking controller."""
