"""Throughput, memory and MFU measurements of the suite's models on one device.

    meters      the device, clocks (host or CUDA events) and peak-memory meters every measurement uses
    budget      the GPU check's time budget: a SIGALRM at the deadline stops the phase running past it
    compare     `bench train` / `bench sample`: model A vs model B at the same batch
    measure     the GPU check's measurements: matmul rate, the engine's training step, sampling, Inception
    report      the GPU check's targets and its markdown
    gpu_check   `bench gpu`: every measurement in turn within the budget, each saved as soon as it is made
"""
