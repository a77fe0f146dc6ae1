// Placeholder until the kernels land; see include/kiln_kernels.h.
#include "kiln_kernels.h"
