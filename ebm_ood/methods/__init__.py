"""Training methods. Each module owns its loss, its training loop (through ``ebm_ood.training``) and
its detector."""
