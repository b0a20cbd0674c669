"""One module per Caffe layer family, each registering its emitters with
``@emits("Type")`` (and its refusals with ``refuses``). Importing this package
registers them all."""
import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
