/*
 * _levels_c: records_build.book_levels' loop over a book message's levels, in C.
 *
 * Why: a book message is tens to hundreds of levels, and each became a lob record through a
 * few interpreted lines (read the level, two exact() calls, copy the template, set three
 * fields, build the Output): ~70% of the processor's time on Binance and HTX, several times
 * what reading the Decimals alone costs (bench/peers.py).
 *
 * How: lob_levels(outputs, template, output_type, topic, key, side, levels, exact) appends, per
 * level, output_type((topic, key, record)) where record is a copy of template with side, price
 * and size set, price and size read from level[0] and level[1] exactly as exact() reads them:
 * - an exact str of plain digits (an optional '-', digits, at most one '.') is Decimal(text):
 *   such a text is never NaN or Infinity, so exact()'s finiteness check cannot refuse it, and
 *   a malformed one ("1.2.3") raises Decimal's own InvalidOperation, as exact() does;
 * - a finite Decimal is itself;
 * - anything else is exact(value): the reference converts it or raises its own error.
 * level[i] is read as Python reads it (a list or tuple directly, any other object through
 * its __getitem__), so a short or wrong level raises the same IndexError/KeyError/TypeError.
 * lob_sided_levels does the same for levels [side, price, size, ...] (Coinbase and Gemini
 * changes): the side is read first, through a dict of the venue's side names, and any name the
 * dict lacks goes to the venue's own side function, which raises its own error.
 * The pure-Python loops in records_build stay the reference; tests compare the two.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Levels are [price, size, ...]. */
#define LEVEL_PRICE 0
#define LEVEL_SIZE 1
/* An Output is (topic, key, record). */
#define OUTPUT_FIELDS 3
/* outputs, template, output_type, topic, key, side, levels, exact */
#define LOB_LEVELS_ARGS 8
/* outputs, template, output_type, topic, key, sides, side_of, levels, exact */
#define LOB_SIDED_LEVELS_ARGS 9
/* A sided level is [side, price, size, ...]. */
#define LEVEL_SIDE 0

static PyObject *SIDE, *PRICE, *SIZE;   /* the record's keys, interned */
static PyObject *IS_FINITE;             /* "is_finite" */
static PyObject *DECIMAL;               /* decimal.Decimal */

/* Whether `text` is -?digits with at most one '.': Decimal reads it as a finite value (or refuses it). */
static int
plain_number(PyObject *text)
{
    if (!PyUnicode_IS_ASCII(text)) {
        return 0;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    const Py_UCS1 *c = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t i = (length > 0 && c[0] == '-') ? 1 : 0;
    int digits = 0;
    for (; i < length; i++) {
        if (c[i] >= '0' && c[i] <= '9') {
            digits = 1;
        }
        else if (c[i] != '.') {
            return 0;
        }
    }
    return digits;
}

/* exact(value), a new reference: plain strings and finite Decimals in C, the rest by the reference. */
static PyObject *
exact_value(PyObject *value, PyObject *exact)
{
    if (PyUnicode_CheckExact(value) && plain_number(value)) {
        return PyObject_CallOneArg(DECIMAL, value);
    }
    if (Py_TYPE(value) == (PyTypeObject *)DECIMAL) {
        PyObject *finite = PyObject_CallMethodNoArgs(value, IS_FINITE);
        if (finite == NULL) {
            return NULL;
        }
        Py_DECREF(finite);
        if (finite == Py_True) {
            return Py_NewRef(value);
        }
    }
    return PyObject_CallOneArg(exact, value);
}

/* level[index], a new reference, read as Python's level[index] reads it. */
static PyObject *
level_item(PyObject *level, Py_ssize_t index)
{
    if (PyList_CheckExact(level) && index < PyList_GET_SIZE(level)) {
        return Py_NewRef(PyList_GET_ITEM(level, index));
    }
    if (PyTuple_CheckExact(level) && index < PyTuple_GET_SIZE(level)) {
        return Py_NewRef(PyTuple_GET_ITEM(level, index));
    }
    PyObject *key = PyLong_FromSsize_t(index);
    if (key == NULL) {
        return NULL;
    }
    PyObject *item = PyObject_GetItem(level, key);
    Py_DECREF(key);
    return item;
}

/* exact(level[index]), a new reference. */
static PyObject *
level_number(PyObject *level, Py_ssize_t index, PyObject *exact)
{
    PyObject *item = level_item(level, index);
    if (item == NULL) {
        return NULL;
    }
    PyObject *number = exact_value(item, exact);
    Py_DECREF(item);
    return number;
}

/* output_type((topic, key, record)) without calling its __new__ (a NamedTuple's fields, in order). */
static PyObject *
new_output(PyTypeObject *output_type, PyObject *topic, PyObject *key, PyObject *record)
{
    PyObject *output = output_type->tp_alloc(output_type, OUTPUT_FIELDS);
    if (output == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(output, 0, Py_NewRef(topic));
    PyTuple_SET_ITEM(output, 1, Py_NewRef(key));
    PyTuple_SET_ITEM(output, 2, Py_NewRef(record));
    return output;
}

/* What every level of one call shares. */
typedef struct {
    PyObject *outputs, *template, *topic, *key, *exact;
    PyTypeObject *output_type;
} Shared;

/* One level's Output, a new reference: its price at level[first], its size at level[first + 1]. */
static PyObject *
level_output(const Shared *shared, PyObject *level, PyObject *side, Py_ssize_t first)
{
    PyObject *template = shared->template, *exact = shared->exact;
    PyObject *price = level_number(level, first + LEVEL_PRICE, exact);
    if (price == NULL) {
        return NULL;
    }
    PyObject *size = level_number(level, first + LEVEL_SIZE, exact);
    if (size == NULL) {
        Py_DECREF(price);
        return NULL;
    }
    PyObject *output = NULL;
    PyObject *record = PyDict_Copy(template);
    if (record != NULL && PyDict_SetItem(record, SIDE, side) == 0 && PyDict_SetItem(record, PRICE, price) == 0
        && PyDict_SetItem(record, SIZE, size) == 0) {
        output = new_output(shared->output_type, shared->topic, shared->key, record);
    }
    Py_XDECREF(record);
    Py_DECREF(price);
    Py_DECREF(size);
    return output;
}

/* The side of a sided level from level[0]: sides[level[0]] for a known str, else side_of(level[0]) (which may raise). */
static PyObject *
level_side(PyObject *level, PyObject *sides, PyObject *side_of)
{
    PyObject *name = level_item(level, LEVEL_SIDE);
    if (name == NULL) {
        return NULL;
    }
    PyObject *side = PyUnicode_CheckExact(name) ? PyDict_GetItemWithError(sides, name) : NULL;
    if (side != NULL) {
        Py_INCREF(side);
    }
    else if (!PyErr_Occurred()) {
        side = PyObject_CallOneArg(side_of, name);
    }
    Py_DECREF(name);
    return side;
}

/*
 * Every level's Output appended to shared->outputs.  side: every level's, or NULL: each level's own from
 * level[0] (sides, side_of), its price and size following it.
 */
static PyObject *
append_levels(const Shared *shared, PyObject *levels, PyObject *side, PyObject *sides, PyObject *side_of)
{
    PyObject *iterator = PyObject_GetIter(levels);
    if (iterator == NULL) {
        return NULL;
    }
    PyObject *level;
    while ((level = PyIter_Next(iterator)) != NULL) {
        PyObject *output = NULL;
        if (side != NULL) {
            output = level_output(shared, level, side, 0);
        }
        else {
            PyObject *own = level_side(level, sides, side_of);
            if (own != NULL) {
                output = level_output(shared, level, own, LEVEL_SIDE + 1);
                Py_DECREF(own);
            }
        }
        Py_DECREF(level);
        if (output == NULL || PyList_Append(shared->outputs, output) < 0) {
            Py_XDECREF(output);
            Py_DECREF(iterator);
            return NULL;
        }
        Py_DECREF(output);
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The arguments both functions begin with: outputs, template, output_type, topic, key. */
static int
shared_arguments(Shared *shared, PyObject *const *args)
{
    shared->outputs = args[0];
    shared->template = args[1];
    shared->output_type = (PyTypeObject *)args[2];
    shared->topic = args[3];
    shared->key = args[4];
    if (!PyList_Check(shared->outputs) || !PyDict_Check(shared->template) || !PyType_Check(args[2])
        || !PyType_IsSubtype(shared->output_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "expected (outputs: list, template: dict, output_type: a tuple type, ...)");
        return -1;
    }
    return 0;
}

static int
check_count(const char *function, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments, got %zd", function, expected, nargs);
        return -1;
    }
    return 0;
}

static PyObject *
lob_levels(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Shared shared;
    if (check_count("lob_levels", nargs, LOB_LEVELS_ARGS) < 0 || shared_arguments(&shared, args) < 0) {
        return NULL;
    }
    shared.exact = args[7];
    return append_levels(&shared, args[6], args[5], NULL, NULL);
}

static PyObject *
lob_sided_levels(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Shared shared;
    if (check_count("lob_sided_levels", nargs, LOB_SIDED_LEVELS_ARGS) < 0 || shared_arguments(&shared, args) < 0) {
        return NULL;
    }
    if (!PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "sides must be a dict");
        return NULL;
    }
    shared.exact = args[8];
    return append_levels(&shared, args[7], NULL, args[5], args[6]);
}

static PyMethodDef methods[] = {
    {"lob_levels", (PyCFunction)(void (*)(void))lob_levels, METH_FASTCALL,
     "lob_levels(outputs, template, output_type, topic, key, side, levels, exact)\n--\n\n"
     "Append output_type((topic, key, record)) per [price, size, ...] level: record is a copy of template\n"
     "with side, and price and size as exact(level[0]) and exact(level[1]) give them."},
    {"lob_sided_levels", (PyCFunction)(void (*)(void))lob_sided_levels, METH_FASTCALL,
     "lob_sided_levels(outputs, template, output_type, topic, key, sides, side_of, levels, exact)\n--\n\n"
     "As lob_levels for [side, price, size, ...] levels: each record's side is sides[level[0]] for a str\n"
     "sides holds, else side_of(level[0]) (which raises for a side it does not know)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "l3_atom.stream_processing._levels_c",
    .m_doc = "records_build.book_levels' loop in C (records_build uses it when built).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__levels_c(void)
{
    SIDE = PyUnicode_InternFromString("side");
    PRICE = PyUnicode_InternFromString("price");
    SIZE = PyUnicode_InternFromString("size");
    IS_FINITE = PyUnicode_InternFromString("is_finite");
    if (SIDE == NULL || PRICE == NULL || SIZE == NULL || IS_FINITE == NULL) {
        return NULL;
    }
    PyObject *decimal = PyImport_ImportModule("decimal");
    if (decimal == NULL) {
        return NULL;
    }
    DECIMAL = PyObject_GetAttrString(decimal, "Decimal");
    Py_DECREF(decimal);
    if (DECIMAL == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
