"""Built-in diffusion laws: heat (Ornstein-Uhlenbeck), pme, custom F."""
