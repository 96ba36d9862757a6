/* The helpers are static inline in include/CRelaySIMD.h; SwiftPM wants one source file. */
#include "CRelaySIMD.h"
