"""C++ (CPU) and CUDA sources of the masked NT-Xent operator, shipped as package data."""
