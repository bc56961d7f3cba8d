"""A name -> builder table: ``create("sknet_cifar_small", num_classes=10)`` and ``list_models()``."""
_BUILDERS = {}


def register(builder):
    """Decorator: make ``builder`` available to create() under its function name."""
    _BUILDERS[builder.__name__] = builder
    return builder


def create(name, num_classes=None, **kwargs):
    """Build a registered model; ``num_classes`` defaults to the model's own (1000 ImageNet, 10 CIFAR)
    and other keyword arguments (attention=, sk_kwargs=, ...) go to the model's constructor."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return _BUILDERS[name](**kwargs)


def list_models():
    return sorted(_BUILDERS)


__all__ = ["register", "create", "list_models"]
