/*
 * _top_text_c: KrakenLevelTexts' text of one book side's best levels, in C.
 *
 * Why: Kraken's checksum hashes the top 10 levels of each side, and a v1 book update changes the
 * top of a side four times in five (the recorded traffic).  Taking the side's top levels
 * (BookSide.top) and joining each level's kept text (KrakenLevelTexts._text) cost ~2 us per
 * update in Python, about a tenth of the standardiser's work on Kraken (bench/peers.py).
 *
 * How: top_text(side, depth, texts, level_text) reads the side as BookSide keeps it (`prices`
 * ascending, `levels` price -> size, `descending` for bids) and, for each of its best `depth`
 * levels, takes texts[price] = (price, size, text) when it holds these very price and size
 * objects, else level_text(price, size) (kept in texts); it returns the texts joined.  So it does
 * exactly what KrakenLevelTexts._text(side.top(depth)) does, which stays the reference (and runs
 * where this module is not built); tests compare the two.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* top_text's arguments: side, depth, texts, level_text */
#define TOP_TEXT_ARGS 4
/* A kept text is (price, size, text). */
#define HELD_FIELDS 3
#define HELD_PRICE 0
#define HELD_SIZE 1
#define HELD_TEXT 2

static PyObject *PRICES, *LEVELS, *DESCENDING, *EMPTY;   /* attribute names, interned; "" */

/* The text of one level: the kept one when it is of these price and size objects, else a new one, kept. */
static PyObject *
level_text_of(PyObject *texts, PyObject *level_text, PyObject *price, PyObject *size)
{
    PyObject *held = PyDict_GetItemWithError(texts, price);
    if (held == NULL && PyErr_Occurred()) {
        return NULL;
    }
    if (held != NULL && PyTuple_CheckExact(held) && PyTuple_GET_SIZE(held) == HELD_FIELDS
        && PyTuple_GET_ITEM(held, HELD_PRICE) == price && PyTuple_GET_ITEM(held, HELD_SIZE) == size) {
        return Py_NewRef(PyTuple_GET_ITEM(held, HELD_TEXT));
    }
    PyObject *text = PyObject_CallFunctionObjArgs(level_text, price, size, NULL);
    if (text == NULL) {
        return NULL;
    }
    PyObject *kept = PyTuple_Pack(HELD_FIELDS, price, size, text);
    if (kept == NULL || PyDict_SetItem(texts, price, kept) < 0) {
        Py_XDECREF(kept);
        Py_DECREF(text);
        return NULL;
    }
    Py_DECREF(kept);
    return text;
}

static PyObject *
joined_texts(PyObject *prices, PyObject *levels, int descending, Py_ssize_t depth, PyObject *texts,
             PyObject *level_text)
{
    Py_ssize_t count = PyList_GET_SIZE(prices);
    if (depth < count) {
        count = depth < 0 ? 0 : depth;
    }
    PyObject *parts = PyList_New(count);
    if (parts == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        /* The list may not shrink under us: level_text is the caller's own formatting, not the book's. */
        if (PyList_GET_SIZE(prices) < count) {
            PyErr_SetString(PyExc_RuntimeError, "the book side changed while its text was made");
            Py_DECREF(parts);
            return NULL;
        }
        PyObject *price = PyList_GET_ITEM(prices, descending ? PyList_GET_SIZE(prices) - 1 - k : k);
        Py_INCREF(price);
        PyObject *size = PyDict_GetItemWithError(levels, price);
        if (size == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetObject(PyExc_KeyError, price);
            }
            Py_DECREF(price);
            Py_DECREF(parts);
            return NULL;
        }
        Py_INCREF(size);
        PyObject *text = level_text_of(texts, level_text, price, size);
        Py_DECREF(price);
        Py_DECREF(size);
        if (text == NULL) {
            Py_DECREF(parts);
            return NULL;
        }
        PyList_SET_ITEM(parts, k, text);
    }
    PyObject *joined = PyUnicode_Join(EMPTY, parts);
    Py_DECREF(parts);
    return joined;
}

static PyObject *
top_text(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != TOP_TEXT_ARGS) {
        PyErr_Format(PyExc_TypeError, "top_text expected %d arguments, got %zd", TOP_TEXT_ARGS, nargs);
        return NULL;
    }
    PyObject *side = args[0], *texts = args[2], *level_text = args[3];
    Py_ssize_t depth = PyLong_AsSsize_t(args[1]);
    if (depth == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyDict_CheckExact(texts)) {
        PyErr_SetString(PyExc_TypeError, "top_text: texts must be a dict");
        return NULL;
    }
    PyObject *prices = PyObject_GetAttr(side, PRICES);
    PyObject *levels = prices == NULL ? NULL : PyObject_GetAttr(side, LEVELS);
    PyObject *flag = levels == NULL ? NULL : PyObject_GetAttr(side, DESCENDING);
    int descending = flag == NULL ? -1 : PyObject_IsTrue(flag);
    PyObject *result = NULL;
    if (descending >= 0) {
        if (!PyList_CheckExact(prices) || !PyDict_CheckExact(levels)) {
            PyErr_SetString(PyExc_TypeError, "top_text: the side's prices must be a list and its levels a dict");
        }
        else {
            result = joined_texts(prices, levels, descending, depth, texts, level_text);
        }
    }
    Py_XDECREF(prices);
    Py_XDECREF(levels);
    Py_XDECREF(flag);
    return result;
}

static PyMethodDef module_methods[] = {
    {"top_text", (PyCFunction)(void (*)(void))top_text, METH_FASTCALL,
     "top_text(side, depth, texts, level_text) -> str\n--\n\n"
     "KrakenLevelTexts._text(side.top(depth)), each level's text kept in texts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "l3_atom.books._top_text_c",
    .m_doc = "The text of a book side's best levels for Kraken's checksum, in C (KrakenLevelTexts is the reference).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__top_text_c(void)
{
    PRICES = PyUnicode_InternFromString("prices");
    LEVELS = PyUnicode_InternFromString("levels");
    DESCENDING = PyUnicode_InternFromString("descending");
    EMPTY = PyUnicode_FromString("");
    if (PRICES == NULL || LEVELS == NULL || DESCENDING == NULL || EMPTY == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
