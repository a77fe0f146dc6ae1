/* kiln.h — Kiln's embedding C API (being written; see Documentation/CABI.md). */
#ifndef KILN_H
#define KILN_H
#endif
