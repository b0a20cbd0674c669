"""Neural style transfer (Gatys, Ecker & Bethge 2015) on Caffe nets (``caffe_compat.recipes.style``).

VGG-19 (or VGG-16, or any net with the named layers): content conv4_2, style
conv1_1 ... conv5_1, Gram-matrix style loss normalised as the paper (and
fzliu/style-transfer), squared total variation, L-BFGS-B (scipy) or Adam (MXNet),
coarse-to-fine scales. Features and gradients come from the engine block on the MXNet
device (:class:`FeatureNet`: the deploy net cut after the deepest used layer).

    from caffe_compat.recipes.style import NeuralStyle, load_image, save_image
    ns = NeuralStyle.from_zoo("vgg19")          # or .from_files(prototxt, weights)
    out = ns.transfer(load_image("photo.jpg"), load_image("painting.jpg"), size=512,
                      iters=500, scales=2)
    save_image(out, "out.png")

``caffe-compat style CONTENT STYLE -o OUT.png`` is the command line.
"""
from caffe_compat.recipes.style.features import FeatureNet, feature_net_param
from caffe_compat.recipes.style.losses import (content_layer_loss, gram, relative_distance,
                                               style_layer_loss, tv_loss)
from caffe_compat.recipes.style.transfer import (CONTENT_LAYERS, DEFAULTS, OPTIMIZERS,
                                                 STYLE_LAYERS, VGG_MEAN, Losses, NeuralStyle,
                                                 load_image, resize_to, save_image)

__all__ = ["CONTENT_LAYERS", "DEFAULTS", "FeatureNet", "Losses", "NeuralStyle", "OPTIMIZERS",
           "STYLE_LAYERS", "VGG_MEAN", "content_layer_loss", "feature_net_param", "gram",
           "load_image", "relative_distance", "resize_to", "save_image", "style_layer_loss",
           "tv_loss"]
