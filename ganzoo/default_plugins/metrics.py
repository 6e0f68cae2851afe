"""Built-in metrics and the ``eval`` / ``evaluator`` commands, registered through the public hooks.

``ganzoo.metrics`` imports only torch (already loaded by ``import ganzoo``);
the commands import the evaluation code when they run, so ``ganzoo list``
stays fast.
"""
from ganzoo.hookspecs import hookimpl


@hookimpl
def register_metrics(register):
    from ganzoo.metrics import METRICS

    for name, cls in METRICS.items():
        register(name, cls)
    from ganzoo.metrics.stacked import StackedModes

    register(StackedModes.name, StackedModes)


@hookimpl
def register_commands(cli):
    from ganzoo.metrics.commands import eval_command, evaluator_group

    cli.add_command(eval_command)
    cli.add_command(evaluator_group)
