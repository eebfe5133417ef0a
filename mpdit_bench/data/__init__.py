"""Datasets: Fashion-MNIST (the CPU stand-in for ImageNet latents) and pre-extracted latent stores."""
