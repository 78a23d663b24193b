"""Naive references: one loop implementation per kernel, forward and backward.

Each function transcribes the math of ``../shared/lecture`` one output element at a time (for
convolution: z(n, x, y) = sum_m sum_i sum_j w(n, m, i, j) * y(m, x*S + i*d, y*S + j*d) + b(n)).
They are the textbook and the test oracle.  They never call a fast kernel; only the argument
normalisation of ``striate.kernels.shapes`` is shared, so both sides read arguments alike.
"""
