"""Code that runs on the far side: the worker server, the Lambda handler, the Ray
entry point. It imports nothing from the client side: only the standard library,
cloudpickle and the sibling modules here, so the folder can be copied into an
image or a zip as a package of its own (``straightline_runtime``).
"""
