"""Layer types that are not exported, each with the reason the export error gives.

Loss, accuracy and output layers are not inference; the others compute something ONNX
has no exact operator for (or whose result depends on data in a way a static ONNX graph
cannot hold). Exporting only up to the blobs before them (``outputs=``/``--outputs``)
leaves them out.
"""
from caffe_compat.onnx_export.registry import refuses

refuses("a loss/accuracy layer is not part of inference; export a deploy net, or name the "
        "blobs to export with --outputs",
        "SoftmaxWithLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss", "ContrastiveLoss",
        "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "SmoothL1Loss", "Accuracy")
refuses("HDF5Output writes files as a side effect", "HDF5Output")
refuses("a Python layer runs arbitrary Python code", "Python")
refuses("Caffe's recurrent layers carry their hidden state from one forward to the next and "
        "restart streams where cont is 0, which ONNX's RNN/LSTM operators do not do",
        "RNN", "LSTM", "LSTMUnit")
refuses("ONNX's MaxRoiPool does not define how ROI corners and bin edges are rounded, which "
        "Fast R-CNN's ROIPooling fixes (round, floor/ceil); runtimes differ",
        "ROIPooling")
refuses("R-FCN's position-sensitive ROI pooling has no ONNX operator", "PSROIPooling")
refuses("RPN proposals (anchor decoding, NMS, a data-dependent number of boxes) have no "
        "exact ONNX counterpart; export the RPN's score and box blobs with --outputs",
        "Proposal")
