"""SGLD sampling: the sampler (both forms, schedules), the persistent replay buffer, and the fused update op.

``from ebm_ood.sampling import sgld, ReplayBuffer``; ``ops.backend()`` says whether the compiled op is used.
"""
from ebm_ood.sampling.replay_buffer import ReplayBuffer
from ebm_ood.sampling.sgld import class_conditional_energy, schedule_value, sgld

__all__ = ["ReplayBuffer", "class_conditional_energy", "schedule_value", "sgld"]
