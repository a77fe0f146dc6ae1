/* kiln_checksum.h — CRC-32C (Castagnoli) for KilnFormat's artifact sections, with the x86 SSE 4.2 `crc32`
 * instruction when the CPU has it (chosen at run time) and a portable slicing-by-8 walk otherwise. */
#ifndef KILN_CHECKSUM_H
#define KILN_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Continues the CRC-32C `crc` of earlier bytes over `size` bytes at `data` (0 to start):
 *  kiln_crc32c(kiln_crc32c(0, a), b) == the CRC-32C of a followed by b. */
uint32_t kiln_crc32c(uint32_t crc, const void *data, size_t size);

/** The same with the portable walk only (for tests that compare the two). */
uint32_t kiln_crc32c_portable(uint32_t crc, const void *data, size_t size);

#ifdef __cplusplus
}
#endif

#endif
