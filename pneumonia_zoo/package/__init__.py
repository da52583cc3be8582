"""The model package: the contract between training and serving (JSON + safetensors + ONNX).

It imports no MLflow: training writes packages, tracking logs and registers them, serving, the CLI
and MLflow's pyfunc flavour load them. Nothing in a package is pickled or executable.
"""
