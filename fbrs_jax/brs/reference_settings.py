"""The reference's evaluation settings, defined once (docs/reference.md: SPEC §2.1, §3.1, §3.3,
§4.2); the spec, the objective, the solvers, the click step, evaluate, ablate, benchmark and the
command line read them from here."""
PROB_THRESH = 0.49          # probability threshold of masks and click constraints
MIN_IOU_DIFF = 0.01         # the solve stops when the mask's IoU with the last one changes less
N_CLICKS = 20               # clicks per sample
TARGET_IOU = 0.90           # a sample stops at this IoU
MAXFUN = 20                 # L-BFGS-B budget: objective evaluations (maxiter = 2 * MAXFUN)
HISTORY = 20                # L-BFGS memory
REG_WEIGHT = 1e-3           # regulariser weight of the optimised scale (and bias)
REG_BIAS_WEIGHT = 10.0      # relative weight of the f-BRS bias (input BRS: 1.0)
