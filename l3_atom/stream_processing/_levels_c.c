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
 * The pure-Python loop in records_build stays the reference; tests compare the two.
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

/* One level's Output, a new reference. */
static PyObject *
level_output(PyObject *level, PyObject *template, PyTypeObject *output_type, PyObject *topic, PyObject *key,
             PyObject *side, PyObject *exact)
{
    PyObject *price = level_number(level, LEVEL_PRICE, exact);
    if (price == NULL) {
        return NULL;
    }
    PyObject *size = level_number(level, LEVEL_SIZE, exact);
    if (size == NULL) {
        Py_DECREF(price);
        return NULL;
    }
    PyObject *output = NULL;
    PyObject *record = PyDict_Copy(template);
    if (record != NULL && PyDict_SetItem(record, SIDE, side) == 0 && PyDict_SetItem(record, PRICE, price) == 0
        && PyDict_SetItem(record, SIZE, size) == 0) {
        output = new_output(output_type, topic, key, record);
    }
    Py_XDECREF(record);
    Py_DECREF(price);
    Py_DECREF(size);
    return output;
}

static PyObject *
lob_levels(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != LOB_LEVELS_ARGS) {
        PyErr_Format(PyExc_TypeError, "lob_levels takes %d arguments, got %zd", LOB_LEVELS_ARGS, nargs);
        return NULL;
    }
    PyObject *outputs = args[0], *template = args[1], *output_type = args[2], *topic = args[3], *key = args[4],
             *side = args[5], *levels = args[6], *exact = args[7];
    if (!PyList_Check(outputs) || !PyDict_Check(template) || !PyType_Check(output_type)
        || !PyType_IsSubtype((PyTypeObject *)output_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "lob_levels(outputs: list, template: dict, output_type: a tuple type, ...)");
        return NULL;
    }
    PyObject *iterator = PyObject_GetIter(levels);
    if (iterator == NULL) {
        return NULL;
    }
    PyObject *level;
    while ((level = PyIter_Next(iterator)) != NULL) {
        PyObject *output = level_output(level, template, (PyTypeObject *)output_type, topic, key, side, exact);
        Py_DECREF(level);
        if (output == NULL || PyList_Append(outputs, output) < 0) {
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

static PyMethodDef methods[] = {
    {"lob_levels", (PyCFunction)(void (*)(void))lob_levels, METH_FASTCALL,
     "lob_levels(outputs, template, output_type, topic, key, side, levels, exact)\n--\n\n"
     "Append output_type((topic, key, record)) per [price, size, ...] level: record is a copy of template\n"
     "with side, and price and size as exact(level[0]) and exact(level[1]) give them."},
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
