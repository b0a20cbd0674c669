"""caffe-compat: run legacy Caffe nets, weights and recipes on MXNet Gluon.

Layout: the library is ``caffe_compat/``; ``recipes/`` and ``model_zoo/`` live at the
top of the repository (as the project asked) but install inside the package as
``caffe_compat.recipes`` and ``caffe_compat.model_zoo``, so there is one namespace.
"""
from setuptools import find_packages, setup

core_packages = find_packages(include=["caffe_compat", "caffe_compat.*"])
recipe_packages = ["caffe_compat.recipes" + p[len("recipes"):]
                   for p in find_packages(include=["recipes", "recipes.*"])]
zoo_packages = ["caffe_compat.model_zoo" + p[len("model_zoo"):]
                for p in find_packages(include=["model_zoo", "model_zoo.*"])]

setup(
    name="caffe-compat",
    version="0.1.0",
    description="Run Caffe prototxt/caffemodel work on MXNet Gluon with Caffe's numbers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=core_packages + recipe_packages + zoo_packages,
    package_dir={"caffe_compat.recipes": "recipes", "caffe_compat.model_zoo": "model_zoo"},
    package_data={
        "caffe_compat": ["proto/*.proto", "data/*", "data/**/*"],
        "caffe_compat.model_zoo": ["*.json", "*.tsv", "labels/*", "prototxt/*"],
        "caffe_compat.recipes": ["*/data/*"],
    },
    include_package_data=True,
    install_requires=[
        "mxnet==1.9.1",  # GPU users: install the matching mxnet-cu1xx==1.9.1 wheel instead
        "numpy==1.23.5",  # MXNet 1.9 breaks on numpy >= 1.24
        "protobuf>=5.26",
        "opencv-python",
        "scikit-image",
        "gluoncv",
        "tqdm",
        "h5py",
        "scipy",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["caffe-compat=caffe_compat.cli.main:main"]},
)
