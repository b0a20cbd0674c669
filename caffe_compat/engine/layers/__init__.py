"""Every built-in layer type, one module per family, each class registered by
``@register_layer("TypeName", origin="BVLC")``. Importing this package registers them."""
import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
