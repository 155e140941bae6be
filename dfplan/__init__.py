"""dfplan: planning and control with RNN Diffusion Forcing.

    import dfplan
    planner = dfplan.load_planner("umaze.pt")            # CUDA when present, else CPU
    plan = planner.plan(obs, goal, horizon=32)            # obs [B, 4], goal [B, 2] -> Plan in env steps
"""

__version__ = "0.1.0"


def load_planner(checkpoint, device="auto", **sampler_overrides):
    from dfplan.planners.df import load_planner as _load

    return _load(checkpoint, device=device, **sampler_overrides)


def __getattr__(name):  # lazy, so `import dfplan` stays light
    if name == "MPCController":
        from dfplan.control.mpc import MPCController

        return MPCController
    if name == "make_env":
        from dfplan.envs import make_env

        return make_env
    raise AttributeError(name)
