/*
 * abi_layout — prints the size, alignment and field offsets of every struct kiln.h ships, and the value of
 * every ABI constant, for kiln.h and kiln_plugin.h. Tests/KilnCTests compares the output with Tests/KilnCTests/abi-layout.txt: a change
 * to a shipped layout fails that test (fields may only be appended, with a new ABI minor version).
 */
#include <kiln/kiln.h>
#include <kiln/kiln_plugin.h>

#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>

#define STRUCT(T) printf("%s size %zu align %zu\n", #T, sizeof(T), alignof(T))
#define FIELD(T, f) printf("%s.%s offset %zu size %zu\n", #T, #f, offsetof(T, f), sizeof(((T *)0)->f))
#define CONSTANT(c) printf("%s = %d\n", #c, (int)(c))

int main(void) {
    STRUCT(kiln_dtype);
    FIELD(kiln_dtype, code);
    FIELD(kiln_dtype, bits);
    FIELD(kiln_dtype, lanes);

    STRUCT(kiln_device);
    FIELD(kiln_device, device_type);
    FIELD(kiln_device, device_id);

    STRUCT(kiln_tensor);
    FIELD(kiln_tensor, data);
    FIELD(kiln_tensor, device);
    FIELD(kiln_tensor, ndim);
    FIELD(kiln_tensor, dtype);
    FIELD(kiln_tensor, shape);
    FIELD(kiln_tensor, strides);
    FIELD(kiln_tensor, byte_offset);

    STRUCT(kiln_context_options);
    FIELD(kiln_context_options, struct_size);
    FIELD(kiln_context_options, default_backend);

    STRUCT(kiln_load_options);
    FIELD(kiln_load_options, struct_size);
    FIELD(kiln_load_options, backend);
    FIELD(kiln_load_options, num_threads);
    FIELD(kiln_load_options, reserved);
    FIELD(kiln_load_options, memory_budget_mb);  /* appended in ABI 1.3 */
    /* appended in ABI 1.3: signed artifacts */
    FIELD(kiln_load_options, trusted_keys);
    FIELD(kiln_load_options, trusted_key_count);

    STRUCT(kiln_value_info);
    FIELD(kiln_value_info, struct_size);
    FIELD(kiln_value_info, name);
    FIELD(kiln_value_info, dtype);
    FIELD(kiln_value_info, elem_type);
    FIELD(kiln_value_info, rank);
    FIELD(kiln_value_info, dims);
    FIELD(kiln_value_info, dim_names);

    STRUCT(kiln_partition_entry);
    FIELD(kiln_partition_entry, struct_size);
    FIELD(kiln_partition_entry, node);
    FIELD(kiln_partition_entry, op);
    FIELD(kiln_partition_entry, backend);
    FIELD(kiln_partition_entry, reason);

    STRUCT(kiln_run_options);
    FIELD(kiln_run_options, struct_size);
    FIELD(kiln_run_options, flags);
    FIELD(kiln_run_options, timeout_ms);  /* appended in ABI 1.3 */

    STRUCT(kiln_compile_options);
    FIELD(kiln_compile_options, struct_size);
    FIELD(kiln_compile_options, target);
    FIELD(kiln_compile_options, option_keys);
    FIELD(kiln_compile_options, option_values);
    FIELD(kiln_compile_options, option_count);

    CONSTANT(KILN_OK);
    CONSTANT(KILN_ERROR_IO);
    CONSTANT(KILN_ERROR_INVALID_MODEL);
    CONSTANT(KILN_ERROR_UNSUPPORTED);
    CONSTANT(KILN_ERROR_INVALID_ARGUMENT);
    CONSTANT(KILN_ERROR_RUNTIME);
    CONSTANT(KILN_ERROR_INVALID_ARTIFACT);
    CONSTANT(KILN_ERROR_VERSION_MISMATCH);
    CONSTANT(KILN_ERROR_INTERNAL);
    CONSTANT(KILN_DTYPE_INT);
    CONSTANT(KILN_DTYPE_UINT);
    CONSTANT(KILN_DTYPE_FLOAT);
    CONSTANT(KILN_DTYPE_OPAQUE);
    CONSTANT(KILN_DTYPE_BFLOAT);
    CONSTANT(KILN_DTYPE_COMPLEX);
    CONSTANT(KILN_DTYPE_BOOL);
    CONSTANT(KILN_DTYPE_FLOAT8_E4M3FN);
    CONSTANT(KILN_DTYPE_FLOAT8_E4M3FNUZ);
    CONSTANT(KILN_DTYPE_FLOAT8_E5M2);
    CONSTANT(KILN_DTYPE_FLOAT8_E5M2FNUZ);
    CONSTANT(KILN_DTYPE_FLOAT8_E8M0FNU);
    CONSTANT(KILN_DTYPE_FLOAT4_E2M1FN);
    CONSTANT(KILN_DEVICE_CPU);
    /* kiln_plugin.h: the vendor backend ABI. */
    STRUCT(kiln_plugin_host);
    FIELD(kiln_plugin_host, struct_size);
    FIELD(kiln_plugin_host, abi_min_major);
    FIELD(kiln_plugin_host, abi_min_minor);
    FIELD(kiln_plugin_host, abi_max_major);
    FIELD(kiln_plugin_host, abi_max_minor);
    FIELD(kiln_plugin_host, host_version);
    FIELD(kiln_plugin_host, host_context);
    FIELD(kiln_plugin_host, error_create);
    FIELD(kiln_plugin_host, log);
    FIELD(kiln_plugin_host, alloc);
    FIELD(kiln_plugin_host, free);

    STRUCT(kiln_plugin_bytes);
    FIELD(kiln_plugin_bytes, struct_size);
    FIELD(kiln_plugin_bytes, data);
    FIELD(kiln_plugin_bytes, size);
    FIELD(kiln_plugin_bytes, format);
    FIELD(kiln_plugin_bytes, reserved);

    STRUCT(kiln_plugin_claim);
    FIELD(kiln_plugin_claim, struct_size);
    FIELD(kiln_plugin_claim, node_count);
    FIELD(kiln_plugin_claim, supported);
    FIELD(kiln_plugin_claim, reasons);
    FIELD(kiln_plugin_claim, owner);

    STRUCT(kiln_plugin_compile_options);
    FIELD(kiln_plugin_compile_options, struct_size);
    FIELD(kiln_plugin_compile_options, target);
    FIELD(kiln_plugin_compile_options, opt_level);
    FIELD(kiln_plugin_compile_options, reserved);
    FIELD(kiln_plugin_compile_options, option_count);
    FIELD(kiln_plugin_compile_options, option_keys);
    FIELD(kiln_plugin_compile_options, option_values);

    STRUCT(kiln_plugin_payload);
    FIELD(kiln_plugin_payload, struct_size);
    FIELD(kiln_plugin_payload, data);
    FIELD(kiln_plugin_payload, size);
    FIELD(kiln_plugin_payload, compat);
    FIELD(kiln_plugin_payload, owner);

    STRUCT(kiln_plugin_backend);
    FIELD(kiln_plugin_backend, struct_size);
    FIELD(kiln_plugin_backend, name);
    FIELD(kiln_plugin_backend, vendor);
    FIELD(kiln_plugin_backend, version);
    FIELD(kiln_plugin_backend, flags);
    FIELD(kiln_plugin_backend, context);
    FIELD(kiln_plugin_backend, claim);
    FIELD(kiln_plugin_backend, compile);
    FIELD(kiln_plugin_backend, check);
    FIELD(kiln_plugin_backend, load);
    FIELD(kiln_plugin_backend, execute);
    FIELD(kiln_plugin_backend, unload);
    FIELD(kiln_plugin_backend, release);
    /* appended in plugin ABI 1.2 */
    FIELD(kiln_plugin_backend, devices);
    FIELD(kiln_plugin_backend, load_with_options);
    FIELD(kiln_plugin_backend, target_count);
    FIELD(kiln_plugin_backend, targets);
    FIELD(kiln_plugin_backend, buffer_alloc);
    FIELD(kiln_plugin_backend, buffer_free);
    FIELD(kiln_plugin_backend, buffer_write);
    FIELD(kiln_plugin_backend, buffer_read);
    /* appended in plugin ABI 1.3 */
    FIELD(kiln_plugin_backend, option_count);
    FIELD(kiln_plugin_backend, options);
    /* appended in plugin ABI 1.4 */
    FIELD(kiln_plugin_backend, profile);
    /* appended in plugin ABI 1.5 */
    FIELD(kiln_plugin_backend, min_group_size);

    STRUCT(kiln_plugin_header);
    FIELD(kiln_plugin_header, struct_size);
    FIELD(kiln_plugin_header, abi_major);
    FIELD(kiln_plugin_header, abi_minor);
    FIELD(kiln_plugin_header, name);
    FIELD(kiln_plugin_header, vendor);
    FIELD(kiln_plugin_header, version);
    FIELD(kiln_plugin_header, backend_count);
    FIELD(kiln_plugin_header, backends);
    FIELD(kiln_plugin_header, context);
    FIELD(kiln_plugin_header, shutdown);

    CONSTANT(KILN_PLUGIN_ABI_MAJOR);
    CONSTANT(KILN_PLUGIN_ABI_MINOR);
    CONSTANT(KILN_PLUGIN_MAX_RANK);

    /* plugin ABI 1.2: devices, load options, device buffers */
    STRUCT(kiln_plugin_device);
    FIELD(kiln_plugin_device, struct_size);
    FIELD(kiln_plugin_device, name);
    FIELD(kiln_plugin_device, kind);
    FIELD(kiln_plugin_device, reserved);
    FIELD(kiln_plugin_device, memory_bytes);
    FIELD(kiln_plugin_device, property_count);
    FIELD(kiln_plugin_device, property_keys);
    FIELD(kiln_plugin_device, property_values);

    STRUCT(kiln_plugin_device_list);
    FIELD(kiln_plugin_device_list, struct_size);
    FIELD(kiln_plugin_device_list, device_count);
    FIELD(kiln_plugin_device_list, devices);
    FIELD(kiln_plugin_device_list, owner);

    STRUCT(kiln_plugin_load_options);
    FIELD(kiln_plugin_load_options, struct_size);
    FIELD(kiln_plugin_load_options, device);
    FIELD(kiln_plugin_load_options, reserved);

    CONSTANT(KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE);
    CONSTANT(KILN_PLUGIN_BACKEND_DEVICE_BUFFERS);
    CONSTANT(KILN_PLUGIN_DEVICE_CPU);
    CONSTANT(KILN_PLUGIN_DEVICE_GPU);
    CONSTANT(KILN_PLUGIN_DEVICE_NPU);
    CONSTANT(KILN_PLUGIN_DEVICE_FPGA);
    CONSTANT(KILN_PLUGIN_DEVICE_DSP);
    CONSTANT(KILN_PLUGIN_DEVICE_SIMULATOR);
    CONSTANT(KILN_PLUGIN_DEVICE_BUFFER);

    /* kiln.h ABI version (1.2 added KILN_ABI_VERSION and kiln_abi_check) */
    CONSTANT(KILN_ABI_VERSION_MAJOR);
    CONSTANT(KILN_ABI_VERSION_MINOR);

    /* plugin ABI 1.3: declared backend options */
    STRUCT(kiln_plugin_option);
    FIELD(kiln_plugin_option, struct_size);
    FIELD(kiln_plugin_option, name);
    FIELD(kiln_plugin_option, default_value);
    FIELD(kiln_plugin_option, help);
    FIELD(kiln_plugin_option, choice_count);
    FIELD(kiln_plugin_option, choices);

    /* plugin ABI 1.4: device profiles */
    STRUCT(kiln_plugin_profile_step);
    FIELD(kiln_plugin_profile_step, name);
    FIELD(kiln_plugin_profile_step, unit);
    FIELD(kiln_plugin_profile_step, start_cycle);
    FIELD(kiln_plugin_profile_step, cycles);
    STRUCT(kiln_plugin_profile);
    FIELD(kiln_plugin_profile, struct_size);
    FIELD(kiln_plugin_profile, clock_hz);
    FIELD(kiln_plugin_profile, total_cycles);
    FIELD(kiln_plugin_profile, step_count);
    FIELD(kiln_plugin_profile, steps);
    FIELD(kiln_plugin_profile, owner);
    return 0;
}
