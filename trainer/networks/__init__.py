"""The GAN's networks: residual blocks, generator (encoder-decoder-encoder), discriminator."""
