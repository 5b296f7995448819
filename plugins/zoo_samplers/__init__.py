"""Built-in samplers: deterministic (euler, heun, rk45, dpmpp, dpmpp2s, unipc, ddim, lms, ipndm, edm) and stochastic (em, pc, euler_a, dpmpp_sde)."""
import zoo
from zoo_samplers.ancestral import DDIM, EulerAncestral
from zoo_samplers.dpmpp import DPMSolverPP, DPMSolverPPSDE
from zoo_samplers.edm import EDM
from zoo_samplers.explicit import Euler, Heun
from zoo_samplers.multistep import IPNDM, LMS
from zoo_samplers.rk45 import RK45
from zoo_samplers.singlestep import DPMSolverPP2S
from zoo_samplers.stochastic import EulerMaruyama, PredictorCorrector
from zoo_samplers.unipc import UniPC

SAMPLERS = (Euler, Heun, RK45, DPMSolverPP, DPMSolverPP2S, UniPC, DDIM, LMS, IPNDM, EDM, EulerMaruyama, PredictorCorrector, EulerAncestral,
            DPMSolverPPSDE)


@zoo.hookimpl
def zoo_register_samplers(register) -> None:
    for cls in SAMPLERS:
        register(cls)
