"""torch.compile in tests: traced by TorchDynamo as on a GPU, but handed to a backend of the test's choosing
instead of inductor, whose code generation takes minutes on a CPU."""

import pytest


def no_compiler(graph, example_inputs):
    """A backend that fails as compiling does on a machine without a C++ compiler (CPU) or Triton (GPU)."""
    raise RuntimeError("simulated: no C++ compiler found")


@pytest.fixture
def compile_with(monkeypatch):
    """`compile_with(backend)`: every torch.compile from then on uses `backend`; what Dynamo traced before is
    forgotten, and what it traces in the test is forgotten at its end, even when it fails."""
    import torch

    compile_ = torch.compile

    def use(backend) -> None:
        monkeypatch.setattr(torch, "compile", lambda module, **options: compile_(module, backend=backend, **options))
        torch._dynamo.reset()

    yield use
    torch._dynamo.reset()
