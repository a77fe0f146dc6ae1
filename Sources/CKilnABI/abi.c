// The C ABI headers live in include/kiln (linked here as include/); this target exposes them to Swift.
#include "kiln/kiln.h"
#include "kiln/kiln_plugin.h"
