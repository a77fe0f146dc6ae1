/* kiln_plugin.h — the vendor backend ABI (being written; see Documentation/WritingABackend.md). */
#ifndef KILN_PLUGIN_H
#define KILN_PLUGIN_H
#endif
