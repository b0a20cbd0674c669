"""R-CNN recipe (Girshick et al. 2014): region proposals by selective search, then per-region CNN features."""
