// libzstd (Debian libzstd-dev) for Swift. ZSTD_VERSION_NUMBER is a macro Swift does not import:
// call ZSTD_versionNumber() instead.
#include <zstd.h>
