"""learn: the torch learner and sampler of physfield's fields.

It reads training targets through the HDF5 cache (``physfield.targets.open_cache``) and the
public physfield API only; physfield itself never imports torch.
"""
