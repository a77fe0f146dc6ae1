/*
 * kiln._fastrun — the per-call path of Model.run for a known input signature, in C.
 *
 * Model.run through ctypes costs several microseconds per call (argument conversion, buffer exports, the
 * structs, the dict) — more than a small model's whole run (a tree ensemble at batch 1 walks in ~6 µs). This
 * module does the same work as kiln/__init__.py's planned path (_run_planned) in a few hundred nanoseconds:
 * a Plan is made once per input signature (names, shapes, buffer formats) from a run that took the general
 * path; Plan.run(feeds) checks that the feeds match it exactly, makes the outputs with numpy.empty, calls
 * kiln_run with the GIL released and returns {name: array}. Anything it does not take (another signature, a
 * non-contiguous or non-ndarray feed, a run that fails) returns None and the caller takes the general path,
 * which reports errors with their full messages. It is optional: kiln/__init__.py works without it.
 *
 * Built against the stable ABI of CPython 3.11 (Py_LIMITED_API), so one binary serves 3.11 and later; it needs
 * no NumPy headers (arrays are read through the buffer protocol). A Gate counts the runs in progress so that
 * Model.close() can wait for them before the model's handle is freed.
 */
#define PY_SSIZE_T_CLEAN
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x030B0000
#endif
#include <Python.h>

/* Stores `value` (a new reference) in `slot`, dropping what was there. */
#define FR_SET(slot, value)          \
    do {                             \
        PyObject *old_ = (PyObject *)(slot); \
        (slot) = (value);            \
        Py_XDECREF(old_);            \
    } while (0)

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The layout of kiln.h's kiln_tensor (ABI 1.x), mirrored so this file builds without the SDK's headers. */
typedef struct {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} fr_dtype;

typedef struct {
    void *data;
    int32_t device_type, device_id;
    int32_t ndim;
    fr_dtype dtype;
    int64_t *shape;
    int64_t *strides;
    uint64_t byte_offset;
} fr_tensor;

_Static_assert(sizeof(fr_tensor) == 48 && offsetof(fr_tensor, ndim) == 16 && offsetof(fr_tensor, dtype) == 20 &&
               offsetof(fr_tensor, shape) == 24 && offsetof(fr_tensor, byte_offset) == 40,
               "fr_tensor must match kiln_tensor");

typedef void *(*fr_run_fn)(void *model, const fr_tensor *inputs, size_t input_count, fr_tensor *outputs,
                           size_t output_count, const void *options);
typedef void (*fr_error_free_fn)(void *error);

/* The most inputs or outputs a Plan takes (its per-call state lives on the stack); larger models take the
 * general path. */
#define FR_MAX_VALUES 16
#define FR_MAX_RANK 8

/* --- Gate ------------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    Py_ssize_t active;  /* runs in progress (changed with the GIL held) */
    int closed;
    PyObject *on_idle;  /* called once the last run ends after close() (wakes Model.close) */
} Gate;

static int gate_init(Gate *self, PyObject *args, PyObject *kwds) {
    PyObject *on_idle;
    static char *keywords[] = {"on_idle", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", keywords, &on_idle)) return -1;
    Py_INCREF(on_idle);
    FR_SET(self->on_idle, on_idle);
    return 0;
}

static void gate_dealloc(Gate *self) {
    PyTypeObject *type = Py_TYPE((PyObject *)self);
    Py_XDECREF(self->on_idle);
    freefunc free_slot = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_slot(self);
    Py_DECREF(type);
}

static PyObject *gate_close(Gate *self, PyObject *unused) {
    (void)unused;
    self->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *gate_get_active(Gate *self, void *unused) {
    (void)unused;
    return PyLong_FromSsize_t(self->active);
}

static PyMethodDef gate_methods[] = {
    {"close", (PyCFunction)gate_close, METH_NOARGS, "Refuses new runs (they return None); runs in progress finish."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef gate_getset[] = {
    {"active", (getter)gate_get_active, NULL, "The number of runs in progress.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot gate_slots[] = {
    {Py_tp_doc, "Gate(on_idle): counts a model's runs in progress; close() refuses new ones."},
    {Py_tp_init, gate_init},
    {Py_tp_dealloc, gate_dealloc},
    {Py_tp_methods, gate_methods},
    {Py_tp_getset, gate_getset},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec gate_spec = {"kiln._fastrun.Gate", sizeof(Gate), 0, Py_TPFLAGS_DEFAULT, gate_slots};

/* --- Plan ------------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject *name;        /* str */
    int ndim;
    int64_t shape[FR_MAX_RANK];
    Py_ssize_t itemsize;
    char format[8];        /* the buffer format the feed must have ("f", "d", "q", ...) */
    fr_dtype dtype;
} InputSpec;

typedef struct {
    PyObject *name;        /* str */
    PyObject *empty_args;  /* (shape, dtype) for numpy.empty */
    int ndim;
    int64_t shape[FR_MAX_RANK];
    fr_dtype dtype;
} OutputSpec;

typedef struct {
    PyObject_HEAD
    fr_run_fn run;
    fr_error_free_fn error_free;
    void *model;
    PyObject *owner;       /* keeps the model's handle alive */
    Gate *gate;
    PyObject *ndarray;     /* numpy.ndarray: feeds must be exactly this type */
    PyObject *empty;       /* numpy.empty */
    int usable;            /* 0 after a failed run: the caller's general path takes over */
    int n_in, n_out;
    InputSpec in[FR_MAX_VALUES];
    OutputSpec out[FR_MAX_VALUES];
} Plan;

static PyTypeObject *gate_type;

static int read_shape(PyObject *shape, int64_t *dims, int *ndim) {
    PyObject *items = PySequence_Tuple(shape);
    if (items == NULL) return -1;
    Py_ssize_t n = PyTuple_Size(items);
    if (n > FR_MAX_RANK) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "shape has too many dims for kiln._fastrun");
        return -1;
    }
    for (Py_ssize_t d = 0; d < n; d++) {
        long long v = PyLong_AsLongLong(PyTuple_GetItem(items, d));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(items);
            return -1;
        }
        dims[d] = (int64_t)v;
    }
    *ndim = (int)n;
    Py_DECREF(items);
    return 0;
}

static void *address_of(PyObject *value) {
    void *p = PyLong_AsVoidPtr(value);
    if (p == NULL && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a NULL address");
    return p;
}

/* Plan(run, error_free, model, owner, gate, ndarray, empty, inputs, outputs)
 *   run, error_free, model: addresses (int) of kiln_run, kiln_error_free and the kiln_model
 *   inputs:  sequence of (name, shape, format, itemsize, code, bits)
 *   outputs: sequence of (name, shape, numpy dtype, code, bits) */
static int plan_init(Plan *self, PyObject *args, PyObject *kwds) {
    PyObject *run, *error_free, *model, *owner, *gate, *ndarray, *empty, *inputs, *outputs;
    if (kwds != NULL && PyDict_Size(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "Plan takes positional arguments only");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OOOOOOOOO", &run, &error_free, &model, &owner, &gate, &ndarray, &empty, &inputs, &outputs))
        return -1;
    if (!PyObject_TypeCheck(gate, gate_type)) {
        PyErr_SetString(PyExc_TypeError, "gate must be a kiln._fastrun.Gate");
        return -1;
    }
    self->run = (fr_run_fn)address_of(run);
    if (self->run == NULL) return -1;
    self->error_free = (fr_error_free_fn)address_of(error_free);
    if (self->error_free == NULL) return -1;
    self->model = address_of(model);
    if (self->model == NULL) return -1;
    Py_INCREF(owner);
    FR_SET(self->owner, owner);
    Py_INCREF(gate);
    FR_SET(self->gate, (Gate *)gate);
    Py_INCREF(ndarray);
    FR_SET(self->ndarray, ndarray);
    Py_INCREF(empty);
    FR_SET(self->empty, empty);

    PyObject *ins = PySequence_Tuple(inputs), *outs = ins ? PySequence_Tuple(outputs) : NULL;
    if (outs == NULL) {
        Py_XDECREF(ins);
        return -1;
    }
    int ok = 0;
    Py_ssize_t n_in = PyTuple_Size(ins), n_out = PyTuple_Size(outs);
    if (n_in > FR_MAX_VALUES || n_out > FR_MAX_VALUES || n_out < 1) {
        PyErr_SetString(PyExc_ValueError, "kiln._fastrun takes 0-16 inputs and 1-16 outputs");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_in; i++) {
        InputSpec *s = &self->in[i];
        PyObject *name, *shape;
        const char *format;
        Py_ssize_t itemsize;
        int code, bits;
        if (!PyArg_ParseTuple(PyTuple_GetItem(ins, i), "UOsnii", &name, &shape, &format, &itemsize, &code, &bits)) goto done;
        if (read_shape(shape, s->shape, &s->ndim) < 0) goto done;
        if (strlen(format) >= sizeof s->format) {
            PyErr_SetString(PyExc_ValueError, "buffer format too long");
            goto done;
        }
        strcpy(s->format, format);
        s->itemsize = itemsize;
        s->dtype = (fr_dtype){(uint8_t)code, (uint8_t)bits, 1};
        Py_INCREF(name);
        FR_SET(s->name, name);
        self->n_in = (int)i + 1;
    }
    for (Py_ssize_t j = 0; j < n_out; j++) {
        OutputSpec *s = &self->out[j];
        PyObject *name, *shape, *dtype;
        int code, bits;
        if (!PyArg_ParseTuple(PyTuple_GetItem(outs, j), "UOOii", &name, &shape, &dtype, &code, &bits)) goto done;
        if (read_shape(shape, s->shape, &s->ndim) < 0) goto done;
        PyObject *empty_args = Py_BuildValue("(OO)", shape, dtype);
        if (empty_args == NULL) goto done;
        FR_SET(s->empty_args, empty_args);
        s->dtype = (fr_dtype){(uint8_t)code, (uint8_t)bits, 1};
        Py_INCREF(name);
        FR_SET(s->name, name);
        self->n_out = (int)j + 1;
    }
    self->usable = 1;
    ok = 1;
done:
    Py_DECREF(ins);
    Py_DECREF(outs);
    return ok ? 0 : -1;
}

static void plan_dealloc(Plan *self) {
    PyTypeObject *type = Py_TYPE((PyObject *)self);
    for (int i = 0; i < self->n_in; i++) Py_XDECREF(self->in[i].name);
    for (int j = 0; j < self->n_out; j++) {
        Py_XDECREF(self->out[j].name);
        Py_XDECREF(self->out[j].empty_args);
    }
    Py_XDECREF(self->owner);
    Py_XDECREF((PyObject *)self->gate);
    Py_XDECREF(self->ndarray);
    Py_XDECREF(self->empty);
    freefunc free_slot = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_slot(self);
    Py_DECREF(type);
}

/* Whether a feed's buffer is exactly what the plan was made for. */
static int matches(const InputSpec *s, const Py_buffer *view) {
    if (view->ndim != s->ndim || view->itemsize != s->itemsize || view->len == 0 || view->format == NULL ||
        strcmp(view->format, s->format) != 0)
        return 0;
    for (int d = 0; d < s->ndim; d++)
        if ((int64_t)view->shape[d] != s->shape[d]) return 0;
    return 1;
}

static void release_all(Py_buffer *views, int count) {
    for (int k = 0; k < count; k++) PyBuffer_Release(&views[k]);
}

/* Plan.run(feeds) -> dict | None: the outputs, or None when this plan does not take `feeds` (or the run
 * failed: the plan then stays unusable). */
static PyObject *plan_run(Plan *self, PyObject *feeds) {
    if (!self->usable || !PyDict_CheckExact(feeds) || PyDict_Size(feeds) != self->n_in || self->gate->closed)
        Py_RETURN_NONE;  /* the caller's general path answers (and says "the model is closed") */
    Py_buffer in_views[FR_MAX_VALUES], out_views[FR_MAX_VALUES];
    PyObject *arrays[FR_MAX_VALUES];
    fr_tensor in[FR_MAX_VALUES], out[FR_MAX_VALUES];
    int n_in = 0, n_out = 0;
    PyObject *result = NULL;

    for (; n_in < self->n_in; n_in++) {
        InputSpec *s = &self->in[n_in];
        PyObject *feed = PyDict_GetItemWithError(feeds, s->name);
        if (feed == NULL) {
            if (PyErr_Occurred()) goto fail;
            goto decline;
        }
        if ((PyObject *)Py_TYPE(feed) != self->ndarray) goto decline;
        if (PyObject_GetBuffer(feed, &in_views[n_in], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            PyErr_Clear();  /* not C-contiguous, or another reason: the general path copes or explains */
            goto decline;
        }
        if (!matches(s, &in_views[n_in])) {
            PyBuffer_Release(&in_views[n_in]);
            goto decline;
        }
        in[n_in] = (fr_tensor){in_views[n_in].buf, 1, 0, s->ndim, s->dtype, s->shape, NULL, 0};
    }
    for (; n_out < self->n_out; n_out++) {
        OutputSpec *s = &self->out[n_out];
        PyObject *array = PyObject_Call(self->empty, s->empty_args, NULL);
        if (array == NULL) goto fail;
        if (PyObject_GetBuffer(array, &out_views[n_out], PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
            Py_DECREF(array);
            goto fail;
        }
        arrays[n_out] = array;
        out[n_out] = (fr_tensor){out_views[n_out].buf, 1, 0, s->ndim, s->dtype, s->shape, NULL, 0};
    }

    /* Checked again here, with no Python code between the check and the count: numpy.empty above may have run
     * a finalizer that let another thread close the model. */
    Gate *gate = self->gate;
    if (gate->closed) {
        release_all(in_views, n_in);
        release_all(out_views, n_out);
        for (int j = 0; j < n_out; j++) Py_DECREF(arrays[j]);
        Py_RETURN_NONE;
    }
    gate->active++;
    void *error;
    Py_BEGIN_ALLOW_THREADS
    error = self->run(self->model, in, (size_t)n_in, out, (size_t)n_out, NULL);
    Py_END_ALLOW_THREADS
    gate->active--;
    release_all(in_views, n_in);
    release_all(out_views, n_out);
    if (error != NULL) {
        self->error_free(error);
        self->usable = 0;
    }
    if (gate->active == 0 && gate->closed && gate->on_idle != NULL) {
        PyObject *r = PyObject_CallNoArgs(gate->on_idle);
        if (r == NULL) goto fail_outputs;
        Py_DECREF(r);
    }
    if (error != NULL) {
        for (int j = 0; j < n_out; j++) Py_DECREF(arrays[j]);
        Py_RETURN_NONE;
    }
    result = PyDict_New();
    if (result == NULL) goto fail_outputs;
    for (int j = 0; j < n_out; j++) {
        if (PyDict_SetItem(result, self->out[j].name, arrays[j]) < 0) {
            Py_CLEAR(result);
            goto fail_outputs;
        }
    }
    for (int j = 0; j < n_out; j++) Py_DECREF(arrays[j]);
    return result;

fail_outputs:
    for (int j = 0; j < n_out; j++) Py_DECREF(arrays[j]);
    return NULL;
decline:
    release_all(in_views, n_in);
    Py_RETURN_NONE;
fail:
    release_all(in_views, n_in);
    release_all(out_views, n_out);
    for (int j = 0; j < n_out; j++) Py_DECREF(arrays[j]);
    return NULL;
}

static PyObject *plan_get_usable(Plan *self, void *unused) {
    (void)unused;
    return PyBool_FromLong(self->usable);
}

static PyMethodDef plan_methods[] = {
    {"run", (PyCFunction)plan_run, METH_O,
     "run(feeds) -> dict | None: the outputs, or None when this plan does not take these feeds or the run failed."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef plan_getset[] = {
    {"usable", (getter)plan_get_usable, NULL, "False once a run through this plan failed.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot plan_slots[] = {
    {Py_tp_doc, "Plan(run, error_free, model, owner, gate, ndarray, empty, inputs, outputs): one input signature's run."},
    {Py_tp_init, plan_init},
    {Py_tp_dealloc, plan_dealloc},
    {Py_tp_methods, plan_methods},
    {Py_tp_getset, plan_getset},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec plan_spec = {"kiln._fastrun.Plan", sizeof(Plan), 0, Py_TPFLAGS_DEFAULT, plan_slots};

/* --- module ---------------------------------------------------------------------------------------------- */

static int module_exec(PyObject *module) {
    gate_type = (PyTypeObject *)PyType_FromSpec(&gate_spec);
    if (gate_type == NULL) return -1;
    if (PyModule_AddObjectRef(module, "Gate", (PyObject *)gate_type) < 0) return -1;
    PyObject *plan_type = PyType_FromSpec(&plan_spec);
    if (plan_type == NULL) return -1;
    int status = PyModule_AddObjectRef(module, "Plan", plan_type);
    Py_DECREF(plan_type);
    return status;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "kiln._fastrun",
    "The per-call path of kiln.Model.run for a known input signature (optional; see kiln/_fastrun.c).",
    0, NULL, module_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastrun(void) { return PyModuleDef_Init(&module_def); }
