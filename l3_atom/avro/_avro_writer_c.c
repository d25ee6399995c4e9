/*
 * _avro_writer_c: the Avro binary writer of writer.py, in C.
 *
 * Why: encoding is the hottest step of the processor.  The generated Python
 * writer costs ~2 us per lob_l3 record, most of it interpreter work per field
 * (lookups, branches, joining bytes) that C does at a fraction of the cost.
 *
 * How: writer.py turns a flat record schema, once, into a plan (one
 * tuple per field: name, kind, optional, Python fallback, enum table, decimal
 * precision and scale) and builds a Writer from it.  Calling the Writer with
 * a record dict writes the prefix (the Confluent wire header) and every
 * field into one growable buffer and returns one bytes object.
 *
 * The Python writer stays the reference.  Each field carries a Python writer
 * of that field alone; whatever C does not handle itself (a wrong type, an int
 * beyond a long, a decimal in exponent notation or beyond the schema, a string
 * that is not UTF-8 encodable) is handed to it, so every refusal raises the
 * Python writer's exception with its message, and unusual values get its
 * exact bytes.
 *
 * Validator, after the Writer type, is validator.py's record validator over
 * a Writer's field table: the record a reader would decode from the writer's
 * bytes, without the bytes (runner.py local).
 *
 * encode_outputs, at the end, is the processor's loop over one message's
 * outputs around the writers (writer.encode_outputs_in_python is its
 * reference).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Python 3.11 defines it; an older one inlines as the compiler sees fit. */
#ifndef Py_ALWAYS_INLINE
#define Py_ALWAYS_INLINE
#endif

/* The field kinds of a plan; the module exports them so Python names them, not numbers. */
enum field_kind {
    KIND_LONG = 0,      /* Avro long, and int (the Python writer writes both alike) */
    KIND_BOOLEAN,
    KIND_STRING,
    KIND_BYTES,
    KIND_ENUM,
    KIND_DECIMAL,       /* bytes with logicalType decimal */
    KIND_COUNT
};

/* What writing one field in C came to. */
enum write_result {
    WRITE_ERROR = -1,   /* an exception is set */
    WRITE_DONE = 0,     /* the field's bytes are in the buffer */
    WRITE_IN_PYTHON = 1 /* not a case C handles: the field's Python writer must write (or refuse) it */
};

/* A ["null", T] union's branch indexes, as zig-zag varints. */
#define NULL_BRANCH 0x00
#define VALUE_BRANCH 0x02
/* An Avro boolean is one byte. */
#define AVRO_FALSE 0x00
#define AVRO_TRUE 0x01

/* Varints carry 7 bits per byte, the high bit set on every byte but the last. */
#define VARINT_GROUP_BITS 7
#define VARINT_GROUP_MASK 0x7F
#define VARINT_CONTINUATION 0x80
/* A 64-bit value needs at most ceil(64 / 7) groups. */
#define MAX_VARINT_BYTES 10
#define BITS_PER_BYTE 8
#define BYTE_MASK 0xFF

/* Records are ~100 bytes: most are written without touching the heap. */
#define INLINE_BUFFER_SIZE 512

/*
 * A decimal's unscaled integer is computed in the widest unsigned type the
 * compiler has.  With 128 bits every value of precision 38 (the project's
 * schemas) fits, since 10**38 < 2**127; without it, 18 digits fit in 64 bits
 * and longer values go to Python.
 */
#ifdef __SIZEOF_INT128__
__extension__ typedef unsigned __int128 unscaled_t;  /* __extension__: a GCC/Clang type, not ISO C */
#define MAX_UNSCALED_DIGITS 38
#else
typedef uint64_t unscaled_t;
#define MAX_UNSCALED_DIGITS 18
#endif
#define DECIMAL_BASE 10

/* POWERS_OF_TEN[k] == 10**k, filled at import. */
static unscaled_t POWERS_OF_TEN[MAX_UNSCALED_DIGITS + 1];

/*
 * An enum of up to this many symbols is first scanned for the value itself (the interned symbol the
 * standardisers write): a few pointer comparisons cost less than a dict lookup.
 */
#define MAX_SCANNED_SYMBOLS 4

typedef struct {
    PyObject *name;       /* the record's key (str) */
    PyObject *python;     /* the Python writer of a record of this field alone: {name: value} -> bytes */
    PyObject *symbols;    /* enum: dict symbol -> index (int), the Writer's own copy; NULL otherwise */
    int scanned;          /* enum: how many symbols the scan below holds (0: the dict alone) */
    PyObject *scanned_symbols[MAX_SCANNED_SYMBOLS];  /* borrowed from `symbols`, which never changes */
    long long scanned_positions[MAX_SCANNED_SYMBOLS];
    int kind;             /* enum field_kind */
    int optional;         /* a ["null", T] union */
    int scale;            /* decimal: digits after the point */
    int limit_known;      /* decimal: whether `limit` bounds it (else every value of MAX_UNSCALED_DIGITS fits) */
    unscaled_t limit;     /* decimal: 10**precision; the unscaled value must stay below it */
    Py_ssize_t at_position;  /* the field whose key is the record's i-th (this is fields[i]), once key_order_known */
} Field;

typedef struct {
    PyObject_VAR_HEAD     /* ob_size: the number of fields */
    vectorcallfunc vectorcall;
    PyObject *prefix;     /* bytes written before the body (the wire header) */
    PyObject *decimal_type;
    int key_order_known;  /* whether fields[].at_position holds the key order of the last record read by name */
    int keys_in_field_order;  /* once key_order_known: whether that order is the schema's (at_position[i] == i) */
    Field fields[];
} Writer;

/*
 * A writer reads its records' values in the order of their keys when it can (values_in_key_order):
 * records of one topic are made alike (a copy of one template, or one literal), so their keys come
 * in one order, and walking a dict's entries costs less than a hash lookup per field.  Records of
 * up to this many fields.
 */
#define MAX_ORDERED_FIELDS 64

/* ---------------------------------------------------------------- buffer */

/*
 * The output under construction: on the stack while it fits, then on the heap.
 * One per call, never shared: a field's Python writer runs arbitrary code,
 * which may even call this writer again.
 */
typedef struct {
    unsigned char *data;
    Py_ssize_t size;
    Py_ssize_t capacity;
    unsigned char inline_data[INLINE_BUFFER_SIZE];
} Buffer;

static void
buffer_init(Buffer *buffer)
{
    buffer->data = buffer->inline_data;
    buffer->size = 0;
    buffer->capacity = INLINE_BUFFER_SIZE;
}

static void
buffer_release(Buffer *buffer)
{
    if (buffer->data != buffer->inline_data) {
        PyMem_Free(buffer->data);
    }
}

/* Room for `extra` more bytes than the buffer has: doubling keeps long strings linear. */
static int
buffer_grow(Buffer *buffer, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX / 2 - buffer->size) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t needed = buffer->size + extra;
    Py_ssize_t capacity = buffer->capacity;
    while (capacity < needed) {
        capacity *= 2;
    }
    unsigned char *data;
    if (buffer->data == buffer->inline_data) {
        data = PyMem_Malloc(capacity);
        if (data != NULL) {
            memcpy(data, buffer->data, buffer->size);
        }
    }
    else {
        data = PyMem_Realloc(buffer->data, capacity);
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buffer->data = data;
    buffer->capacity = capacity;
    return 0;
}

/* Room for `extra` more bytes: inlined where written, as most writes fit. */
static inline Py_ALWAYS_INLINE int
buffer_reserve(Buffer *buffer, Py_ssize_t extra)
{
    return extra <= buffer->capacity - buffer->size ? 0 : buffer_grow(buffer, extra);
}

static inline Py_ALWAYS_INLINE int
buffer_append(Buffer *buffer, const void *bytes, Py_ssize_t size)
{
    if (buffer_reserve(buffer, size) < 0) {
        return -1;
    }
    memcpy(buffer->data + buffer->size, bytes, size);
    buffer->size += size;
    return 0;
}

static inline Py_ALWAYS_INLINE int
buffer_put_byte(Buffer *buffer, unsigned char byte)
{
    if (buffer_reserve(buffer, 1) < 0) {
        return -1;
    }
    buffer->data[buffer->size++] = byte;
    return 0;
}

/* ------------------------------------------------------- Avro primitives */

static inline Py_ALWAYS_INLINE int
write_unsigned_varint(Buffer *buffer, uint64_t z)
{
    if (buffer_reserve(buffer, MAX_VARINT_BYTES) < 0) {
        return -1;
    }
    unsigned char *out = buffer->data + buffer->size;
    while (z > VARINT_GROUP_MASK) {
        *out++ = (unsigned char)((z & VARINT_GROUP_MASK) | VARINT_CONTINUATION);
        z >>= VARINT_GROUP_BITS;
    }
    *out++ = (unsigned char)z;
    buffer->size = out - buffer->data;
    return 0;
}

/* Avro longs are zig-zag encoded (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...) so small negatives stay short. */
static inline Py_ALWAYS_INLINE int
write_long(Buffer *buffer, int64_t n)
{
    uint64_t doubled = (uint64_t)n << 1;
    return write_unsigned_varint(buffer, n < 0 ? ~doubled : doubled);
}

/* Avro bytes and strings: the length as a long, then the bytes. */
static inline Py_ALWAYS_INLINE int
write_sized(Buffer *buffer, const void *bytes, Py_ssize_t size)
{
    if (write_long(buffer, (int64_t)size) < 0) {
        return -1;
    }
    return buffer_append(buffer, bytes, size);
}

/* ------------------------------------------------------------- the kinds */

static int
write_long_value(Buffer *buffer, const Writer *Py_UNUSED(writer), const Field *Py_UNUSED(field), PyObject *value)
{
    /* type(value) is not int (a bool included) is the Python writer's refusal. */
    if (!PyLong_CheckExact(value)) {
        return WRITE_IN_PYTHON;
    }
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow) {
        /* Beyond Avro's long: the Python writer's bytes for it, whatever they are. */
        return WRITE_IN_PYTHON;
    }
    if (n == -1 && PyErr_Occurred()) {
        return WRITE_ERROR;
    }
    return write_long(buffer, n) < 0 ? WRITE_ERROR : WRITE_DONE;
}

static int
write_boolean_value(Buffer *buffer, const Writer *Py_UNUSED(writer), const Field *Py_UNUSED(field), PyObject *value)
{
    if (value != Py_True && value != Py_False) {
        return WRITE_IN_PYTHON;
    }
    return buffer_put_byte(buffer, value == Py_True ? AVRO_TRUE : AVRO_FALSE) < 0 ? WRITE_ERROR : WRITE_DONE;
}

static int
write_string_value(Buffer *buffer, const Writer *Py_UNUSED(writer), const Field *Py_UNUSED(field), PyObject *value)
{
    /* Only exact str: a subclass, like any other type, is the Python writer's to judge. */
    if (!PyUnicode_CheckExact(value)) {
        return WRITE_IN_PYTHON;
    }
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(value, &size);
    if (utf8 == NULL) {
        /* e.g. a lone surrogate: Python raises its own UnicodeEncodeError. */
        PyErr_Clear();
        return WRITE_IN_PYTHON;
    }
    return write_sized(buffer, utf8, size) < 0 ? WRITE_ERROR : WRITE_DONE;
}

static int
write_bytes_value(Buffer *buffer, const Writer *Py_UNUSED(writer), const Field *Py_UNUSED(field), PyObject *value)
{
    if (PyBytes_Check(value)) {
        return write_sized(buffer, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)) < 0 ? WRITE_ERROR : WRITE_DONE;
    }
    if (PyByteArray_Check(value)) {
        return write_sized(buffer, PyByteArray_AS_STRING(value), PyByteArray_GET_SIZE(value)) < 0
            ? WRITE_ERROR : WRITE_DONE;
    }
    return WRITE_IN_PYTHON;
}

/* An enum value's symbol position: 1 with *position set; 0 when it is no exact str or no symbol; -1 on an error. */
static int
enum_position(const Field *field, PyObject *value, long long *position)
{
    if (!PyUnicode_CheckExact(value)) {
        return 0;
    }
    for (int i = 0; i < field->scanned; i++) {
        if (field->scanned_symbols[i] == value) {
            *position = field->scanned_positions[i];
            return 1;
        }
    }
    /* An equal string that is another object, or not a symbol. */
    PyObject *index = PyDict_GetItemWithError(field->symbols, value);
    if (index == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    *position = PyLong_AsLongLong(index);
    return *position == -1 && PyErr_Occurred() ? -1 : 1;
}

static int
write_enum_value(Buffer *buffer, const Writer *Py_UNUSED(writer), const Field *field, PyObject *value)
{
    long long position;
    int found = enum_position(field, value, &position);
    if (found <= 0) {
        /* Not a symbol: the Python writer names the symbols in its ValueError. */
        return found < 0 ? WRITE_ERROR : WRITE_IN_PYTHON;
    }
    return write_long(buffer, position) < 0 ? WRITE_ERROR : WRITE_DONE;
}

/*
 * The unscaled integer of a decimal's text at `scale`, for the plain form
 * str(Decimal) gives most values: -?digits(.digits)?  Returns 1 with *magnitude
 * and *negative set, or 0 for anything else (an exponent, NaN, Infinity, more
 * places than the scale, more digits than fit): the Python writer judges those.
 * Like the Python writer, it reads the places as written, so 1.50 at scale 1
 * is refused even though it equals 1.5.
 */
static int
unscaled_from_text(const char *text, Py_ssize_t length, int scale, unscaled_t *magnitude, int *negative)
{
    const char *p = text, *end = text + length;
    *negative = (p < end && *p == '-');
    if (*negative) {
        p++;
    }
    unscaled_t n = 0;
    int digits = 0;          /* significant digits so far (leading zeros do not count) */
    int places = 0;          /* digits after the point */
    int integer_digits = 0;  /* digits before the point, leading zeros included */
    int seen_point = 0;
    for (; p < end; p++) {
        char c = *p;
        if (c >= '0' && c <= '9') {
            if (seen_point) {
                places++;
            }
            else {
                integer_digits++;
            }
            if (n == 0 && c == '0') {
                continue;
            }
            if (++digits > MAX_UNSCALED_DIGITS) {
                return 0;
            }
            n = n * DECIMAL_BASE + (unsigned)(c - '0');
        }
        else if (c == '.' && !seen_point && integer_digits > 0) {
            seen_point = 1;
        }
        else {
            return 0;
        }
    }
    if (integer_digits == 0 || (seen_point && places == 0) || places > scale) {
        return 0;
    }
    int padding = scale - places;
    if (n != 0) {
        if (digits + padding > MAX_UNSCALED_DIGITS) {
            return 0;
        }
        n *= POWERS_OF_TEN[padding];
    }
    *magnitude = n;
    return 1;
}

#define BITS_PER_WORD 64

static int
bit_length_word(uint64_t n)
{
#if defined(__GNUC__)
    return n == 0 ? 0 : BITS_PER_WORD - __builtin_clzll(n);
#else
    int bits = 0;
    while (n != 0) {
        bits++;
        n >>= 1;
    }
    return bits;
#endif
}

/* n.bit_length() */
static int
bit_length(unscaled_t n)
{
#ifdef __SIZEOF_INT128__
    uint64_t high = (uint64_t)(n >> BITS_PER_WORD);
    return high != 0 ? BITS_PER_WORD + bit_length_word(high) : bit_length_word((uint64_t)n);
#else
    return bit_length_word(n);
#endif
}

/*
 * Avro decimal bytes: the unscaled integer in big-endian two's complement, as
 * long as Python's int.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)
 * makes it (one byte more than minimal for -2**(8k-1); the reference does so).
 */
static int
write_unscaled(Buffer *buffer, unscaled_t magnitude, int negative)
{
    int size = (bit_length(magnitude) + BITS_PER_BYTE) / BITS_PER_BYTE;
    unscaled_t twos = negative ? (unscaled_t)0 - magnitude : magnitude;
    /* Fits: a magnitude below 10**MAX_UNSCALED_DIGITS leaves the top bit of unscaled_t clear.  The whole
     * value is laid out big-endian and its last `size` bytes written (the bytes above them are sign only). */
    unsigned char raw[sizeof(unscaled_t)];
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Byte swaps of 64-bit words rather than a loop over bytes. */
#ifdef __SIZEOF_INT128__
    uint64_t words[2] = {__builtin_bswap64((uint64_t)(twos >> BITS_PER_WORD)), __builtin_bswap64((uint64_t)twos)};
#else
    uint64_t words[1] = {__builtin_bswap64(twos)};
#endif
    memcpy(raw, words, sizeof(raw));
#else
    for (int i = (int)sizeof(raw) - 1; i >= 0; i--) {
        raw[i] = (unsigned char)(twos & BYTE_MASK);
        twos >>= BITS_PER_BYTE;
    }
#endif
    return write_sized(buffer, raw + sizeof(raw) - size, size);
}

/*
 * The unscaled integer of a Decimal read from its own digits, without str(): str() and reading its
 * text back were ~60% of encoding a lob record.  _decimal keeps a value as libmpdec's mpd_t:
 * a sign flag, a coefficient in base-10**19 words and an exponent; the unscaled integer at
 * `scale` is coefficient * 10**(exponent + scale).  That layout is CPython's private one, so
 * the module reads it only after checking it at import (decimal_layout_ok, below) and reads
 * every doubtful value (special, places beyond the scale, too many digits) through the text
 * path, whose cases all lead to the same value or to the Python writer.
 */
#if SIZE_MAX == UINT64_MAX && defined(__SIZEOF_INT128__)
#define MPD_LAYOUT_KNOWN 1
typedef struct {
    uint8_t flags;
    int64_t exponent;
    int64_t digits;
    int64_t len;              /* words in use */
    int64_t alloc;
    uint64_t *data;           /* the coefficient, least significant word first */
} MpdLayout;

typedef struct {
    PyObject_HEAD
    Py_hash_t hash;
    MpdLayout dec;
    uint64_t inline_words[4]; /* _Py_DEC_MINALLOC */
} DecimalLayout;

#define MPD_NEGATIVE 1
#define MPD_SPECIAL 14        /* MPD_INF | MPD_NAN | MPD_SNAN */
#define MPD_WORD_DIGITS 19    /* MPD_RDIGITS: 10**19 per word */
#endif

/* Whether decimal.Decimal objects have the layout above (checked once, at import), and that type. */
static int decimal_layout_ok = 0;
static PyTypeObject *checked_decimal_type = NULL;

/* 1 with *magnitude and *negative set, or 0: read this Decimal through its text instead. */
static int
unscaled_from_decimal(PyObject *value, int scale, unscaled_t *magnitude, int *negative)
{
#ifdef MPD_LAYOUT_KNOWN
    const MpdLayout *dec = &((const DecimalLayout *)value)->dec;
    if (!decimal_layout_ok || Py_TYPE(value) != checked_decimal_type || (dec->flags & MPD_SPECIAL) || dec->exponent < -(int64_t)scale
        || dec->exponent > MAX_UNSCALED_DIGITS || dec->len < 1
        || dec->digits + dec->exponent + scale > MAX_UNSCALED_DIGITS) {
        return 0;
    }
    unscaled_t n = 0;
    for (int64_t word = dec->len - 1; word >= 0; word--) {
        n = n * POWERS_OF_TEN[MPD_WORD_DIGITS] + dec->data[word];
    }
    *magnitude = n * POWERS_OF_TEN[dec->exponent + scale];
    *negative = dec->flags & MPD_NEGATIVE;
    return 1;
#else
    return 0;
#endif
}

/*
 * A decimal field's unscaled integer, as the writer writes it: 1 with *magnitude and *negative set;
 * 0 for a value the Python writer must judge (not a Decimal, an exponent or places it reads itself,
 * beyond the precision); -1 on an error.  The writer and the Validator read decimals alike through it.
 */
static int
decimal_unscaled(const Writer *writer, const Field *field, PyObject *value, unscaled_t *magnitude, int *negative)
{
    if (Py_TYPE(value) != (PyTypeObject *)writer->decimal_type) {
        return 0;
    }
    if (!unscaled_from_decimal(value, field->scale, magnitude, negative)) {
        /* str() keeps every digit and the exponent as given: the reference reads the same text. */
        PyObject *text = PyObject_Str(value);
        if (text == NULL) {
            return -1;
        }
        Py_ssize_t length;
        const char *chars = PyUnicode_AsUTF8AndSize(text, &length);
        int parsed = chars == NULL ? -1 : unscaled_from_text(chars, length, field->scale, magnitude, negative);
        Py_DECREF(text);
        if (parsed <= 0) {
            return parsed;
        }
    }
    return !(field->limit_known && *magnitude >= field->limit);
}

static int
write_decimal_value(Buffer *buffer, const Writer *writer, const Field *field, PyObject *value)
{
    unscaled_t magnitude;
    int negative;
    int found = decimal_unscaled(writer, field, value, &magnitude, &negative);
    if (found <= 0) {
        return found < 0 ? WRITE_ERROR : WRITE_IN_PYTHON;
    }
    return write_unscaled(buffer, magnitude, negative) < 0 ? WRITE_ERROR : WRITE_DONE;
}

/* ------------------------------------------------------------ the record */

/* How each kind is written; all share one signature so the record loop looks a field's writer up. */
typedef int (*kind_writer)(Buffer *, const Writer *, const Field *, PyObject *);

static const kind_writer KIND_WRITERS[KIND_COUNT] = {
    [KIND_LONG] = write_long_value,
    [KIND_BOOLEAN] = write_boolean_value,
    [KIND_STRING] = write_string_value,
    [KIND_BYTES] = write_bytes_value,
    [KIND_ENUM] = write_enum_value,
    [KIND_DECIMAL] = write_decimal_value,
};

/* Hand one field to its Python writer: the reference's bytes, or its exception. */
static int
write_in_python(Buffer *buffer, const Field *field, PyObject *value)
{
    PyObject *alone = PyDict_New();
    if (alone == NULL) {
        return WRITE_ERROR;
    }
    if (PyDict_SetItem(alone, field->name, value) < 0) {
        Py_DECREF(alone);
        return WRITE_ERROR;
    }
    PyObject *encoded = PyObject_CallOneArg(field->python, alone);
    Py_DECREF(alone);
    if (encoded == NULL) {
        return WRITE_ERROR;
    }
    if (!PyBytes_Check(encoded)) {
        PyErr_Format(PyExc_TypeError, "a field's Python writer returned %.100s, not bytes", Py_TYPE(encoded)->tp_name);
        Py_DECREF(encoded);
        return WRITE_ERROR;
    }
    int status = buffer_append(buffer, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
    Py_DECREF(encoded);
    return status < 0 ? WRITE_ERROR : WRITE_DONE;
}

static inline Py_ALWAYS_INLINE int
write_field_in_c(Buffer *buffer, const Writer *writer, const Field *field, PyObject *value)
{
    Py_ssize_t start = buffer->size;
    if (field->optional) {
        if (value == Py_None) {
            return buffer_put_byte(buffer, NULL_BRANCH) < 0 ? WRITE_ERROR : WRITE_DONE;
        }
        if (buffer_put_byte(buffer, VALUE_BRANCH) < 0) {
            return WRITE_ERROR;
        }
    }
    int result = KIND_WRITERS[field->kind](buffer, writer, field, value);
    if (result == WRITE_IN_PYTHON) {
        buffer->size = start;   /* the Python writer writes the whole field again, union branch included */
    }
    return result;
}

static int
write_field(Buffer *buffer, const Writer *writer, const Field *field, PyObject *value)
{
    int result = write_field_in_c(buffer, writer, field, value);
    return result == WRITE_IN_PYTHON ? write_in_python(buffer, field, value) : result;
}

/* record[name], a new reference; a missing key is the reference's ValueError. */
static PyObject *
field_value(PyObject *record, PyObject *name)
{
    if (PyDict_CheckExact(record)) {
        PyObject *value = PyDict_GetItemWithError(record, name);
        if (value != NULL) {
            /* Owned: a field's Python writer runs arbitrary code that could drop it from the dict. */
            Py_INCREF(value);
            return value;
        }
        if (!PyErr_Occurred()) {
            /* f"record lacks field {KeyError(name)}": a KeyError prints its key's repr. */
            PyErr_Format(PyExc_ValueError, "record lacks field %R", name);
        }
        return NULL;
    }
    /* Other mappings (defaultdict, __missing__) answer as they would to record[name]. */
    PyObject *value = PyObject_GetItem(record, name);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyObject *type, *error, *traceback;
        PyErr_Fetch(&type, &error, &traceback);
        PyErr_NormalizeException(&type, &error, &traceback);
        PyErr_Format(PyExc_ValueError, "record lacks field %S", error);
        Py_XDECREF(type);
        Py_XDECREF(error);
        Py_XDECREF(traceback);
    }
    return value;
}

/*
 * Whether the record is a dict whose keys are exactly the field names, in the order learnt
 * (learn_key_order): then values[f] is field f's value, a new reference, for every field.
 * Else 0 and nothing is set: the record is read by name.  Keys are compared by identity with
 * the interned names, so a key equal to a name but another object reads by name too.
 */
static int
values_in_key_order(const Writer *self, PyObject *record, PyObject **values)
{
    Py_ssize_t count = Py_SIZE(self);
    if (!self->key_order_known || !PyDict_CheckExact(record) || PyDict_GET_SIZE(record) != count) {
        return 0;
    }
    Py_ssize_t position = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(record, &position, &key, &value)) {
        Py_ssize_t field = self->fields[i].at_position;
        if (key != self->fields[field].name) {
            return 0;
        }
        values[field] = value;
        i++;
    }
    if (i != count) {
        return 0;
    }
    /* Owned: the record could lose them while the fields are written. */
    for (i = 0; i < count; i++) {
        Py_INCREF(values[i]);
    }
    return 1;
}

/* Learn the key order of a dict whose keys are exactly the field names (each the interned name itself). */
static void
learn_key_order(Writer *self, PyObject *record)
{
    Py_ssize_t count = Py_SIZE(self);
    self->key_order_known = 0;
    if (count > MAX_ORDERED_FIELDS || !PyDict_CheckExact(record) || PyDict_GET_SIZE(record) != count) {
        return;
    }
    Py_ssize_t position = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(record, &position, &key, &value)) {
        Py_ssize_t field = 0;
        while (field < count && self->fields[field].name != key) {
            field++;
        }
        if (field == count || i >= count) {
            return;
        }
        self->fields[i++].at_position = field;
    }
    /* Distinct keys, each one of the distinct names: every field has its position. */
    self->key_order_known = (i == count);
    self->keys_in_field_order = 1;
    for (i = 0; i < count; i++) {
        self->keys_in_field_order &= (self->fields[i].at_position == i);
    }
}

/* The fields of a record in key order, values already read (values_in_key_order); the references are released. */
static int
write_values(Buffer *buffer, const Writer *self, PyObject **values)
{
    int status = 0;
    for (Py_ssize_t i = 0; i < Py_SIZE(self); i++) {
        if (status == 0 && write_field(buffer, self, &self->fields[i], values[i]) == WRITE_ERROR) {
            status = -1;
        }
        Py_DECREF(values[i]);
    }
    return status;
}

/* The fields of a record read by name, each read just before it is written, as the reference does. */
static int
write_fields_by_name(Buffer *buffer, Writer *self, PyObject *record)
{
    for (Py_ssize_t i = 0; i < Py_SIZE(self); i++) {
        const Field *field = &self->fields[i];
        PyObject *value = field_value(record, field->name);
        if (value == NULL) {
            return -1;
        }
        int result = write_field(buffer, self, field, value);
        Py_DECREF(value);
        if (result == WRITE_ERROR) {
            return -1;
        }
    }
    /* Every field was there: the next records, made alike, may come in this record's key order. */
    learn_key_order(self, record);
    return 0;
}

static PyObject *
writer_write(Writer *self, PyObject *record)
{
    Buffer buffer;
    buffer_init(&buffer);
    PyObject *values[MAX_ORDERED_FIELDS];
    if (buffer_append(&buffer, PyBytes_AS_STRING(self->prefix), PyBytes_GET_SIZE(self->prefix)) < 0) {
        goto error;
    }
    if (values_in_key_order(self, record, values) ? write_values(&buffer, self, values) < 0
        : write_fields_by_name(&buffer, self, record) < 0) {
        goto error;
    }
    PyObject *encoded = PyBytes_FromStringAndSize((const char *)buffer.data, buffer.size);
    buffer_release(&buffer);
    return encoded;

error:
    buffer_release(&buffer);
    return NULL;
}

/* Whether a call passed one positional argument and no keywords; else 0, with a TypeError naming `what`. */
static int
one_record_argument(size_t nargsf, PyObject *kwnames, const char *what)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_Format(PyExc_TypeError, "a %s takes one argument, the record", what);
        return 0;
    }
    return 1;
}

static PyObject *
writer_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return one_record_argument(nargsf, kwnames, "writer") ? writer_write((Writer *)callable, args[0]) : NULL;
}

/* ------------------------------------------------- book levels, encoded */

/*
 * Writer.lob_levels(outputs, output_type, topic, key, template, side, levels) -> bool
 * Writer.lob_sided_levels(outputs, output_type, topic, key, template, sides, levels) -> bool
 *
 * Why: a book message is tens to thousands of levels whose records differ only in side, price
 * and size.  Made one by one (two Decimals, a copy of the message's record, an Output, then this
 * writer over all eleven fields), a level cost ~2 us; most of it is work whose result is the same
 * for every level of the message.  Here the fields before `side` and after `size` are written
 * once, from `template`, and each level adds only its side, price and size, read from the
 * exchange's own text (or a Decimal) with the writer's own rules.
 *
 * How: appends output_type((topic, key, encoded)) per level [price, size, ...] (sided: [side name,
 * price, size, ...], the side sides[name]) and returns True;
 * or returns False with `outputs` as it was, for the caller's record path to do (and refuse)
 * the same work: when the schema has no consecutive side/price/size, `levels` is not a list or
 * tuple, the template does not write, or any level is not a pair of plain decimal texts (or
 * finite Decimals) that fit the schema.  So every record it makes is byte for byte the one the
 * writer makes of the record dict, and every refusal is the record path's.
 */

#define LEVEL_FIELDS 3          /* side, price, size */
#define LEVEL_PRICE 0           /* levels are [price, size, ...] */
#define SIDED_SIDE 0            /* sided levels are [side name, price, size, ...] */
#define SIDED_PRICE 1

/* The index of the field named `side`, when `price` and `size` follow it as this method expects; else -1. */
static Py_ssize_t
level_fields_at(const Writer *self)
{
    static const char *const names[LEVEL_FIELDS] = {"side", "price", "size"};
    static const int kinds[LEVEL_FIELDS] = {KIND_ENUM, KIND_DECIMAL, KIND_DECIMAL};
    for (Py_ssize_t i = 0; i + LEVEL_FIELDS <= Py_SIZE(self); i++) {
        int found = 1;
        for (int k = 0; found && k < LEVEL_FIELDS; k++) {
            const Field *field = &self->fields[i + k];
            found = !field->optional && field->kind == kinds[k]
                    && PyUnicode_CompareWithASCIIString(field->name, names[k]) == 0;
        }
        if (found) {
            return i;
        }
    }
    return -1;
}

/* Write fields [first, end) of `template`: 1 when written, 0 when the record path must judge, -1 on error. */
static int
write_template_fields(Buffer *buffer, const Writer *self, PyObject *template, Py_ssize_t first, Py_ssize_t end)
{
    for (Py_ssize_t i = first; i < end; i++) {
        const Field *field = &self->fields[i];
        PyObject *value = field_value(template, field->name);
        if (value == NULL) {
            PyErr_Clear();
            return 0;
        }
        int result = write_field_in_c(buffer, self, field, value);
        Py_DECREF(value);
        if (result != WRITE_DONE) {
            /* The record path writes (or refuses) this template's records itself, with its own error. */
            PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

/* A level's decimal as the writer writes it: 1 when written, 0 when the record path must judge, -1 on error. */
static int
write_level_decimal(Buffer *buffer, const Writer *self, const Field *field, PyObject *value)
{
    unscaled_t magnitude;
    int negative;
    if (PyUnicode_CheckExact(value)) {   /* exact(): a str subclass is not an exchange's text */
        if (!PyUnicode_IS_ASCII(value)) {
            return 0;
        }
        const char *text = (const char *)PyUnicode_1BYTE_DATA(value);
        if (!unscaled_from_text(text, PyUnicode_GET_LENGTH(value), field->scale, &magnitude, &negative)) {
            return 0;
        }
    }
    else if (Py_TYPE(value) == (PyTypeObject *)self->decimal_type) {
        if (!unscaled_from_decimal(value, field->scale, &magnitude, &negative)) {
            return 0;
        }
    }
    else {
        return 0;
    }
    if (field->limit_known && magnitude >= field->limit) {
        return 0;
    }
    return write_unscaled(buffer, magnitude, negative) < 0 ? -1 : 1;
}

/* level[index] of a list or tuple, borrowed; NULL when it has no such item. */
static PyObject *
level_part(PyObject *level, Py_ssize_t index)
{
    if (PyList_CheckExact(level)) {
        return index < PyList_GET_SIZE(level) ? PyList_GET_ITEM(level, index) : NULL;
    }
    if (PyTuple_CheckExact(level)) {
        return index < PyTuple_GET_SIZE(level) ? PyTuple_GET_ITEM(level, index) : NULL;
    }
    return NULL;
}

/* One level's record, encoded: head + side + price + size + tail, its price at level[first] and its size
 * next.  1, 0 (record path) or -1. */
static int
encode_level(PyObject **encoded, const Writer *self, const Field *fields, const Buffer *head, const Buffer *tail,
             PyObject *side, PyObject *level, Py_ssize_t first)
{
    PyObject *price = level_part(level, first), *size = level_part(level, first + 1);
    if (side == NULL || price == NULL || size == NULL) {
        return 0;
    }
    Buffer middle;
    buffer_init(&middle);
    int result = KIND_WRITERS[KIND_ENUM](&middle, self, &fields[0], side);
    if (result == WRITE_DONE) {
        result = write_level_decimal(&middle, self, &fields[1], price);
        if (result == 1) {
            result = write_level_decimal(&middle, self, &fields[2], size);
        }
    }
    else {
        result = result == WRITE_ERROR ? -1 : 0;
    }
    if (result == 1) {
        *encoded = PyBytes_FromStringAndSize(NULL, head->size + middle.size + tail->size);
        if (*encoded == NULL) {
            result = -1;
        }
        else {
            char *out = PyBytes_AS_STRING(*encoded);
            memcpy(out, head->data, head->size);
            memcpy(out + head->size, middle.data, middle.size);
            memcpy(out + head->size + middle.size, tail->data, tail->size);
        }
    }
    buffer_release(&middle);
    return result;
}

/* Append output_type((topic, key, encoded)) to outputs, stealing `encoded`. */
static int
append_output(PyObject *outputs, PyTypeObject *output_type, PyObject *topic, PyObject *key, PyObject *encoded)
{
    PyObject *output = output_type->tp_alloc(output_type, LEVEL_FIELDS);
    if (output == NULL) {
        Py_DECREF(encoded);
        return -1;
    }
    PyTuple_SET_ITEM(output, 0, Py_NewRef(topic));
    PyTuple_SET_ITEM(output, 1, Py_NewRef(key));
    PyTuple_SET_ITEM(output, 2, encoded);
    int status = PyList_Append(outputs, output);
    Py_DECREF(output);
    return status;
}

/* Both methods: `side` names every level's side, or (NULL) `sides` maps each level's first item to it. */
static PyObject *
encode_levels(Writer *self, PyObject *outputs, PyObject *output_type, PyObject *topic, PyObject *key,
              PyObject *template, PyObject *side, PyObject *sides, PyObject *levels)
{
    Py_ssize_t at = level_fields_at(self);
    if (at < 0 || !(PyList_CheckExact(levels) || PyTuple_CheckExact(levels))
        || !PyType_IsSubtype((PyTypeObject *)output_type, &PyTuple_Type)) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t start = PyList_GET_SIZE(outputs);
    Buffer head, tail;
    buffer_init(&head);
    buffer_init(&tail);
    int result = buffer_append(&head, PyBytes_AS_STRING(self->prefix), PyBytes_GET_SIZE(self->prefix)) < 0 ? -1 : 1;
    if (result == 1) {
        result = write_template_fields(&head, self, template, 0, at);
    }
    if (result == 1) {
        result = write_template_fields(&tail, self, template, at + LEVEL_FIELDS, Py_SIZE(self));
    }
    PyObject *items = levels;   /* a list or tuple: PySequence_Fast_ITEMS reads both */
    for (Py_ssize_t i = 0; result == 1 && i < PySequence_Fast_GET_SIZE(items); i++) {
        PyObject *encoded = NULL, *level = PySequence_Fast_GET_ITEM(items, i), *named = side;
        if (sides != NULL) {
            /* A name the venue's dict lacks (or no name at all) is for the venue's own side function. */
            PyObject *name = level_part(level, SIDED_SIDE);
            named = name == NULL ? NULL : PyDict_GetItemWithError(sides, name);
            if (named == NULL) {
                PyErr_Clear();
            }
        }
        result = encode_level(&encoded, self, &self->fields[at], &head, &tail, named, level,
                              sides == NULL ? LEVEL_PRICE : SIDED_PRICE);
        if (result == 1 && append_output(outputs, (PyTypeObject *)output_type, topic, key, encoded) < 0) {
            result = -1;
        }
    }
    buffer_release(&head);
    buffer_release(&tail);
    if (result != 1 && PyList_SetSlice(outputs, start, PyList_GET_SIZE(outputs), NULL) < 0) {
        return NULL;
    }
    if (result < 0) {
        return NULL;
    }
    return Py_NewRef(result == 1 ? Py_True : Py_False);
}

static PyObject *
writer_lob_levels(Writer *self, PyObject *args)
{
    PyObject *outputs, *output_type, *topic, *key, *template, *side, *levels;
    if (!PyArg_ParseTuple(args, "O!O!UUO!UO:lob_levels", &PyList_Type, &outputs, &PyType_Type, &output_type, &topic,
                          &key, &PyDict_Type, &template, &side, &levels)) {
        return NULL;
    }
    return encode_levels(self, outputs, output_type, topic, key, template, side, NULL, levels);
}

static PyObject *
writer_lob_sided_levels(Writer *self, PyObject *args)
{
    PyObject *outputs, *output_type, *topic, *key, *template, *sides, *levels;
    if (!PyArg_ParseTuple(args, "O!O!UUO!O!O:lob_sided_levels", &PyList_Type, &outputs, &PyType_Type, &output_type,
                          &topic, &key, &PyDict_Type, &template, &PyDict_Type, &sides, &levels)) {
        return NULL;
    }
    return encode_levels(self, outputs, output_type, topic, key, template, NULL, sides, levels);
}

static PyMethodDef writer_methods[] = {
    {"lob_levels", (PyCFunction)writer_lob_levels, METH_VARARGS,
     "lob_levels(outputs, output_type, topic, key, template, side, levels) -> bool\n--\n\n"
     "Append output_type((topic, key, bytes)) per [price, size, ...] level: the record template with\n"
     "side, price and size set, encoded.  False, outputs unchanged, when the record path must do it."},
    {"lob_sided_levels", (PyCFunction)writer_lob_sided_levels, METH_VARARGS,
     "lob_sided_levels(outputs, output_type, topic, key, template, sides, levels) -> bool\n--\n\n"
     "lob_levels for levels [side name, price, size, ...]: each side is sides[name]; a name sides lacks\n"
     "leaves the message to the record path (the venue's side function gives its error)."},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------ the Writer type */

/* The symbols of a small enum, to scan before the dict; the dict alone if any is not a str with an int position. */
static void
scan_symbols(Field *field)
{
    field->scanned = 0;
    if (PyDict_GET_SIZE(field->symbols) > MAX_SCANNED_SYMBOLS) {
        return;
    }
    Py_ssize_t position = 0;
    PyObject *symbol, *index;
    int count = 0;
    while (PyDict_Next(field->symbols, &position, &symbol, &index)) {
        long long value = PyLong_Check(index) ? PyLong_AsLongLong(index) : -1;
        if (!PyUnicode_CheckExact(symbol) || value < 0) {
            PyErr_Clear();
            return;
        }
        field->scanned_symbols[count] = symbol;
        field->scanned_positions[count++] = value;
    }
    field->scanned = count;
}

/* One plan entry: (name, kind, optional, python_writer, symbols or None, precision, scale). */
static int
field_init(Field *field, PyObject *entry)
{
    PyObject *name, *python, *symbols;
    int kind, optional, precision, scale;
    if (!PyTuple_Check(entry)) {
        PyErr_SetString(PyExc_TypeError, "each field of a plan is a tuple");
        return -1;
    }
    if (!PyArg_ParseTuple(entry, "UipOOii;a plan field is (name, kind, optional, python_writer, symbols, "
                          "precision, scale)", &name, &kind, &optional, &python, &symbols, &precision, &scale)) {
        return -1;
    }
    if (kind < 0 || kind >= KIND_COUNT) {
        PyErr_Format(PyExc_ValueError, "unknown field kind %d", kind);
        return -1;
    }
    if (!PyCallable_Check(python)) {
        PyErr_SetString(PyExc_TypeError, "a field's Python writer must be callable");
        return -1;
    }
    if (kind == KIND_ENUM && !PyDict_Check(symbols)) {
        PyErr_SetString(PyExc_TypeError, "an enum field needs a dict of its symbols");
        return -1;
    }
    if (kind == KIND_DECIMAL && (precision < 1 || scale < 0 || scale > precision)) {
        PyErr_Format(PyExc_ValueError, "decimal precision %d and scale %d are not valid", precision, scale);
        return -1;
    }
    field->kind = kind;
    field->optional = optional;
    field->scale = scale;
    field->limit_known = (kind == KIND_DECIMAL && precision <= MAX_UNSCALED_DIGITS);
    field->limit = field->limit_known ? POWERS_OF_TEN[precision] : 0;
    /* Interned like the keys of dict literals in code: a lookup then matches by identity, not memcmp. */
    field->name = Py_NewRef(name);
    PyUnicode_InternInPlace(&field->name);
    field->python = Py_NewRef(python);
    if (kind == KIND_ENUM) {
        field->symbols = PyDict_Copy(symbols);
        if (field->symbols == NULL) {
            return -1;
        }
        scan_symbols(field);
    }
    return 0;
}

/* Every reference a Writer owns, listed once for the garbage collector's visit and for clearing. */
#define FOR_EACH_REFERENCE(self, apply)                                 \
    do {                                                                \
        apply((self)->prefix);                                          \
        apply((self)->decimal_type);                                    \
        for (Py_ssize_t index_ = 0; index_ < Py_SIZE(self); index_++) { \
            apply((self)->fields[index_].name);                         \
            apply((self)->fields[index_].python);                       \
            apply((self)->fields[index_].symbols);                      \
        }                                                               \
    } while (0)

static int
writer_traverse(Writer *self, visitproc visit, void *arg)
{
    FOR_EACH_REFERENCE(self, Py_VISIT);
    return 0;
}

static int
writer_clear(Writer *self)
{
    FOR_EACH_REFERENCE(self, Py_CLEAR);
    return 0;
}

static void
writer_dealloc(Writer *self)
{
    PyObject_GC_UnTrack(self);
    writer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
writer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"prefix", "fields", "decimal_type", NULL};
    PyObject *prefix, *fields, *decimal_type;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "SO!O!:Writer", keywords, &prefix, &PyTuple_Type, &fields,
                                     &PyType_Type, &decimal_type)) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
    /* tp_alloc zeroes the fields, so clearing a half-built Writer is safe. */
    Writer *self = (Writer *)type->tp_alloc(type, count);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = writer_vectorcall;
    self->prefix = Py_NewRef(prefix);
    self->decimal_type = Py_NewRef(decimal_type);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (field_init(&self->fields[i], PyTuple_GET_ITEM(fields, i)) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

PyDoc_STRVAR(writer_doc,
"Writer(prefix, fields, decimal_type)\n--\n\n"
"A compiled Avro writer of one flat record schema: writer(record) -> prefix + Avro binary.\n"
"fields: one (name, kind, optional, python_writer, symbols, precision, scale) per schema field;\n"
"python_writer writes {name: value} as the reference does, for every value C does not handle.");

/* A var-sized, garbage-collected type called through vectorcall (the Writer, the Validator): its object
 * struct, the prefix of its functions (prefix_new, _dealloc, _traverse, _clear, _doc), its items, and more slots. */
#define CALLABLE_VAR_TYPE(object, prefix, items, ...) {                            \
    PyVarObject_HEAD_INIT(NULL, 0)                                                  \
    .tp_name = "l3_atom.avro._avro_writer_c." #object,                              \
    .tp_doc = prefix##_doc,                                                         \
    .tp_basicsize = offsetof(object, items),                                        \
    .tp_itemsize = sizeof(((object *)NULL)->items[0]),                              \
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL, \
    .tp_new = prefix##_new,                                                         \
    .tp_dealloc = (destructor)prefix##_dealloc,                                     \
    .tp_traverse = (traverseproc)prefix##_traverse,                                 \
    .tp_clear = (inquiry)prefix##_clear,                                            \
    .tp_vectorcall_offset = offsetof(object, vectorcall),                           \
    .tp_call = PyVectorcall_Call,                                                   \
    __VA_ARGS__                                                                     \
}

static PyTypeObject WriterType = CALLABLE_VAR_TYPE(Writer, writer, fields, .tp_methods = writer_methods);

/* ----------------------------------------------------- the record, decoded */

/* 10**19: a 64-bit word holds 19 decimal digits. */
#define WORD_BASE 10000000000000000000ULL
#define WORD_DECIMAL_DIGITS 19

/* The decimal digits of a word, least significant first, into digits; at least `least` of them (zeros ahead). */
static int
word_digits(uint64_t word, int least, char *digits)
{
    int count = 0;
    while (count < least || word != 0) {
        digits[count++] = (char)('0' + (int)(word % DECIMAL_BASE));
        word /= DECIMAL_BASE;
    }
    return count;
}

/* The decimal digits of n (with a '-' when negative and not zero) into out, which has room for them; the end.
 * Digits come from 64-bit words: a division of a 128-bit integer is a library call, so there are at most two. */
static char *
format_unscaled(unscaled_t n, int negative, char *out)
{
    char digits[MAX_UNSCALED_DIGITS + WORD_DECIMAL_DIGITS];
    int count;
    if (n >= WORD_BASE) {
        count = word_digits((uint64_t)(n % WORD_BASE), WORD_DECIMAL_DIGITS, digits);
        count += word_digits((uint64_t)(n / WORD_BASE), 0, digits + count);
    }
    else {
        count = word_digits((uint64_t)n, 1, digits);
    }
    if (negative && n != 0) {
        *out++ = '-';
    }
    while (count > 0) {
        *out++ = digits[--count];
    }
    *out = '\0';
    return out;
}

/*
 * Validator(writer, round_trip): validator.py's compiled record validator, in C.
 *
 * Why: the one-process runtime (runner.py local) checks every record and hands on the record a
 * reader would decode from its Avro bytes, without the bytes.  The generated Python validator
 * cost 1.5-3.5 us per lob_l3 record here, several times what the C writer spends encoding it.
 *
 * How: the same checks as validator.py's generated function, field by field in schema order,
 * over the Writer's own field table: a fast path only for a value the writer takes and the
 * reader gives back equal in type, value and representation (an exact str that UTF-8 encodes,
 * an exact int within a long, True/False, exact bytes, an enum symbol, None in a ["null", T]
 * union, a Decimal whose unscaled integer the writer reads itself, as it writes it); anything
 * else, and a missing field, is round_trip(record): the writer's bytes and the reader's record,
 * or the writer's refusal.  A decimal is decoded as the reader decodes it,
 * Decimal(unscaled).scaleb(-scale): the unscaled integer's digits at exponent -scale (zero is
 * +0 at the scale, never -0), kept per field by unscaled integer.  The record is a new dict
 * in the schema's field order, without keys the schema lacks.  validator.py's generated
 * function stays the reference and serves where this module is not built.
 */

/* A field's decoded decimals by unscaled integer: this many, then it starts over (validator.py keeps as many). */
#define DECIMAL_CACHE_LIMIT 4096
/* Open addressing over twice the limit's slots, a power of two: probes stay short. */
#define DECIMAL_CACHE_BITS 13
#define DECIMAL_CACHE_SLOTS (1 << DECIMAL_CACHE_BITS)
/* Fibonacci hashing: the 64-bit golden ratio spreads the integer's bits over the slot index. */
#define GOLDEN_RATIO_64 0x9E3779B97F4A7C15ULL
/* "E-" and an exponent of up to 10 digits: the decoded Decimal's text after its digits. */
#define EXPONENT_TEXT_SIZE 16

typedef struct {
    unscaled_t magnitude;
    int negative;
    PyObject *decoded;    /* NULL: an empty slot */
} DecodedDecimal;

typedef struct {
    DecodedDecimal *slots;  /* DECIMAL_CACHE_SLOTS, allocated at the field's first decimal; NULL before */
    int used;
} DecimalCache;

typedef struct {
    PyObject_VAR_HEAD     /* ob_size: the number of fields, the writer's */
    vectorcallfunc vectorcall;
    Writer *writer;       /* the field table, and the key order it learns */
    PyObject *round_trip; /* record -> the record read back from the writer's bytes (or the writer's refusal) */
    PyObject *template;   /* {name: None} in field order: each record's dict is a copy of it */
    DecimalCache caches[];
} Validator;

static size_t
decimal_slot(unscaled_t magnitude, int negative)
{
#ifdef __SIZEOF_INT128__
    uint64_t high = (uint64_t)(magnitude >> BITS_PER_WORD);
#else
    uint64_t high = 0;
#endif
    uint64_t mixed = ((uint64_t)magnitude ^ (high * GOLDEN_RATIO_64) ^ (uint64_t)negative) * GOLDEN_RATIO_64;
    return (size_t)(mixed >> (BITS_PER_WORD - DECIMAL_CACHE_BITS));
}

static void
decimal_cache_clear(DecimalCache *cache)
{
    if (cache->slots == NULL) {
        return;
    }
    for (size_t i = 0; i < DECIMAL_CACHE_SLOTS; i++) {
        Py_CLEAR(cache->slots[i].decoded);
    }
    cache->used = 0;
}

/* Decimal(unscaled).scaleb(-scale) as the reader makes it, a new reference: the digits at exponent -scale. */
static PyObject *
decoded_decimal(const Writer *writer, const Field *field, unscaled_t magnitude, int negative)
{
    char text[MAX_UNSCALED_DIGITS + 2 + EXPONENT_TEXT_SIZE];
    char *end = format_unscaled(magnitude, negative, text);
    /* "E-" and the scale's digits (word_digits writes them backwards). */
    *end++ = 'E';
    *end++ = '-';
    char exponent[EXPONENT_TEXT_SIZE];
    for (int count = word_digits((uint64_t)field->scale, 1, exponent); count > 0;) {
        *end++ = exponent[--count];
    }
    PyObject *string = PyUnicode_FromStringAndSize(text, end - text);
    if (string == NULL) {
        return NULL;
    }
    /* Decimal(text) is exact whatever the context: every digit and the exponent are kept. */
    PyObject *decoded = PyObject_CallOneArg(writer->decimal_type, string);
    Py_DECREF(string);
    return decoded;
}

/* The decoded Decimal of an unscaled integer, a new reference: from the field's cache, else made and kept. */
static PyObject *
cached_decimal(DecimalCache *cache, const Writer *writer, const Field *field, unscaled_t magnitude, int negative)
{
    negative = negative && magnitude != 0;  /* the reader's zero has no sign */
    if (cache->slots == NULL) {
        cache->slots = PyMem_Calloc(DECIMAL_CACHE_SLOTS, sizeof(DecodedDecimal));
        if (cache->slots == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
    }
    size_t slot = decimal_slot(magnitude, negative);
    for (; cache->slots[slot].decoded != NULL; slot = (slot + 1) & (DECIMAL_CACHE_SLOTS - 1)) {
        const DecodedDecimal *entry = &cache->slots[slot];
        if (entry->magnitude == magnitude && entry->negative == negative) {
            return Py_NewRef(entry->decoded);
        }
    }
    PyObject *decoded = decoded_decimal(writer, field, magnitude, negative);
    if (decoded == NULL) {
        return NULL;
    }
    if (cache->used >= DECIMAL_CACHE_LIMIT) {
        decimal_cache_clear(cache);
        slot = decimal_slot(magnitude, negative);
    }
    cache->slots[slot] = (DecodedDecimal){magnitude, negative, Py_NewRef(decoded)};
    cache->used++;
    return decoded;
}

/*
 * The decoded value of one field's value, a new reference; NULL without an error for a value off
 * the fast path (the round trip judges the record), NULL with one on an error.
 */
static PyObject *
decoded_value(Validator *self, Py_ssize_t index, PyObject *value)
{
    const Writer *writer = self->writer;
    const Field *field = &writer->fields[index];
    if (field->optional && value == Py_None) {
        return Py_NewRef(value);
    }
    switch (field->kind) {
    case KIND_LONG: {
        if (!PyLong_CheckExact(value)) {
            return NULL;
        }
        int overflow;
        long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
        return overflow || (n == -1 && PyErr_Occurred()) ? NULL : Py_NewRef(value);
    }
    case KIND_BOOLEAN:
        return value == Py_True || value == Py_False ? Py_NewRef(value) : NULL;
    case KIND_STRING:
        if (!PyUnicode_CheckExact(value)) {
            return NULL;
        }
        if (!PyUnicode_IS_ASCII(value) && PyUnicode_AsUTF8AndSize(value, NULL) == NULL) {
            PyErr_Clear();  /* not UTF-8 encodable (a lone surrogate): the writer's refusal */
            return NULL;
        }
        return Py_NewRef(value);
    case KIND_BYTES:
        return PyBytes_CheckExact(value) ? Py_NewRef(value) : NULL;
    case KIND_ENUM: {
        long long position;
        return enum_position(field, value, &position) > 0 ? Py_NewRef(value) : NULL;
    }
    case KIND_DECIMAL: {
        unscaled_t magnitude;
        int negative;
        if (decimal_unscaled(writer, field, value, &magnitude, &negative) <= 0) {
            return NULL;
        }
        return cached_decimal(&self->caches[index], writer, field, magnitude, negative);
    }
    default:
        PyErr_Format(PyExc_SystemError, "unknown field kind %d", field->kind);
        return NULL;
    }
}

/* record[name], a new reference; NULL without an error for a missing field, as record[name] raises KeyError. */
static PyObject *
record_value(PyObject *record, PyObject *name)
{
    if (PyDict_CheckExact(record)) {
        return Py_XNewRef(PyDict_GetItemWithError(record, name));
    }
    PyObject *value = PyObject_GetItem(record, name);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
    }
    return value;
}

/*
 * Every field decoded into `decoded`: 1; 0 for the round trip; -1 on an error.  values: the record's
 * values in field order (values_in_key_order), or NULL to read each field by name just before it is
 * checked, as the generated function does.  holds_values: whether `decoded` is a copy of the record
 * (else of the template), so that only a value decoded as another object is set.
 */
static int
decode_fields(Validator *self, PyObject *record, PyObject *const *values, PyObject *decoded, int holds_values)
{
    for (Py_ssize_t i = 0; i < Py_SIZE(self); i++) {
        PyObject *value = values != NULL ? Py_NewRef(values[i]) : record_value(record, self->writer->fields[i].name);
        if (value == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        PyObject *item = decoded_value(self, i, value);
        Py_DECREF(value);
        if (item == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        int status = holds_values && item == value ? 0 : PyDict_SetItem(decoded, self->writer->fields[i].name, item);
        Py_DECREF(item);
        if (status < 0) {
            return -1;
        }
    }
    return 1;
}

static PyObject *
validator_validate(Validator *self, PyObject *record)
{
    const Writer *writer = self->writer;
    /* A record whose keys are likely the field names in the schema's order is copied whole (copying its table
     * costs less than setting each field) and read from its copy, which nothing else holds; the copy then gets
     * its decoded decimals.  Any other record is read as it is, into a copy of the template. */
    PyObject *copy = NULL;
    if (writer->key_order_known && writer->keys_in_field_order && PyDict_CheckExact(record)
        && PyDict_GET_SIZE(record) == Py_SIZE(self) && (copy = PyDict_Copy(record)) == NULL) {
        return NULL;
    }
    PyObject *values[MAX_ORDERED_FIELDS];
    int ordered = values_in_key_order(writer, copy != NULL ? copy : record, values);
    int holds_values = ordered && copy != NULL;
    if (!holds_values) {
        Py_XSETREF(copy, PyDict_Copy(self->template));
    }
    PyObject *decoded = copy;
    int status = decoded == NULL ? -1 : decode_fields(self, record, ordered ? values : NULL, decoded, holds_values);
    if (ordered) {
        for (Py_ssize_t i = 0; i < Py_SIZE(self); i++) {
            Py_DECREF(values[i]);
        }
    }
    else if (status == 1) {
        /* Every field was there: the next records, made alike, may come in this record's key order. */
        learn_key_order(self->writer, record);
    }
    if (status == 1) {
        return decoded;
    }
    Py_XDECREF(decoded);
    return status == 0 ? PyObject_CallOneArg(self->round_trip, record) : NULL;
}

static PyObject *
validator_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return one_record_argument(nargsf, kwnames, "validator") ? validator_validate((Validator *)callable, args[0])
                                                             : NULL;
}

static int
validator_traverse(Validator *self, visitproc visit, void *arg)
{
    Py_VISIT(self->writer);
    Py_VISIT(self->round_trip);
    Py_VISIT(self->template);
    return 0;
}

static int
validator_clear(Validator *self)
{
    Py_CLEAR(self->writer);
    Py_CLEAR(self->round_trip);
    Py_CLEAR(self->template);
    return 0;
}

static void
validator_dealloc(Validator *self)
{
    PyObject_GC_UnTrack(self);
    validator_clear(self);
    for (Py_ssize_t i = 0; i < Py_SIZE(self); i++) {
        decimal_cache_clear(&self->caches[i]);
        PyMem_Free(self->caches[i].slots);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
validator_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"writer", "round_trip", NULL};
    PyObject *writer, *round_trip;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O:Validator", keywords, &WriterType, &writer, &round_trip)) {
        return NULL;
    }
    if (!PyCallable_Check(round_trip)) {
        PyErr_SetString(PyExc_TypeError, "round_trip must be callable");
        return NULL;
    }
    Py_ssize_t count = Py_SIZE(writer);
    /* tp_alloc zeroes the caches and references, so clearing a half-built Validator is safe. */
    Validator *self = (Validator *)type->tp_alloc(type, count);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = validator_vectorcall;
    self->writer = (Writer *)Py_NewRef(writer);
    self->round_trip = Py_NewRef(round_trip);
    self->template = PyDict_New();
    for (Py_ssize_t i = 0; self->template != NULL && i < count; i++) {
        if (PyDict_SetItem(self->template, self->writer->fields[i].name, Py_None) < 0) {
            Py_CLEAR(self->template);
        }
    }
    if (self->template == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

PyDoc_STRVAR(validator_doc,
"Validator(writer, round_trip)\n--\n\n"
"validator.py's compiled record validator over a C Writer's fields: validator(record) -> the record a\n"
"reader decodes from writer(record)'s bytes, without the bytes; round_trip(record) judges every value\n"
"off the fast path (and every record the writer refuses).");

static PyTypeObject ValidatorType = CALLABLE_VAR_TYPE(Validator, validator, caches, .tp_methods = NULL);

/* --------------------------------------------------- a message's outputs */

/*
 * encode_outputs(outputs, writers, encoded_type, counts): the processor's loop over one raw
 * message's (topic, key, record) outputs, in C.  Why: at a hundred or more lob records a
 * message, the interpreted loop (unpack, look the writer up, call it, build the Encoded, count)
 * cost more than the C writer itself (writer.encode_outputs_in_python is the reference).
 */

/* An output and an Encoded are (topic, key, record or value). */
#define OUTPUT_FIELDS 3
/* outputs, writers, encoded_type, counts */
#define ENCODE_OUTPUTS_ARGS 4

/* `for topic, key, record in outputs` unpacks each output: a new tuple of three, or the interpreter's error. */
static PyObject *
unpacked_output(PyObject *output)
{
    if (PyTuple_Check(output) && PyTuple_GET_SIZE(output) == OUTPUT_FIELDS) {
        return Py_NewRef(output);
    }
    PyObject *items = PySequence_Tuple(output);
    if (items == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError) && Py_TYPE(output)->tp_iter == NULL && !PySequence_Check(output)) {
            PyErr_Format(PyExc_TypeError, "cannot unpack non-iterable %.200s object", Py_TYPE(output)->tp_name);
        }
        return NULL;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(items);
    if (size > OUTPUT_FIELDS) {
        PyErr_Format(PyExc_ValueError, "too many values to unpack (expected %d)", OUTPUT_FIELDS);
    }
    else if (size < OUTPUT_FIELDS) {
        PyErr_Format(PyExc_ValueError, "not enough values to unpack (expected %d, got %zd)", OUTPUT_FIELDS, size);
    }
    else {
        return items;
    }
    Py_DECREF(items);
    return NULL;
}

/* writers[topic], a new reference; a missing topic raises the KeyError dict's subscript raises. */
static PyObject *
topic_writer(PyObject *writers, PyObject *topic)
{
    PyObject *writer = PyDict_GetItemWithError(writers, topic);
    if (writer != NULL) {
        return Py_NewRef(writer);
    }
    if (!PyErr_Occurred()) {
        /* As dict[key] raises it: the key wrapped in a tuple, so a tuple key is not taken for the args. */
        PyObject *args = PyTuple_Pack(1, topic);
        if (args != NULL) {
            PyErr_SetObject(PyExc_KeyError, args);
            Py_DECREF(args);
        }
    }
    return NULL;
}

/* writer(record): a C Writer is written directly, any other callable (a validator, fastavro) called; bytes
 * are a record already encoded (book levels a Writer encoded itself, lob_levels) and are kept. */
static PyObject *
write_record(PyObject *writer, PyObject *record)
{
    if (PyBytes_CheckExact(record)) {
        return Py_NewRef(record);
    }
    if (Py_TYPE(writer) == &WriterType) {
        return writer_write((Writer *)writer, record);
    }
    if (Py_TYPE(writer) == &ValidatorType) {
        return validator_validate((Validator *)writer, record);
    }
    return PyObject_CallOneArg(writer, record);
}

/* counts[topic] += 1 for each Encoded, one += per run of the same topic object. */
static int
count_topics(PyObject *encoded, PyObject *counts)
{
    Py_ssize_t size = PyList_GET_SIZE(encoded);
    Py_ssize_t start = 0;
    while (start < size) {
        PyObject *topic = PyTuple_GET_ITEM(PyList_GET_ITEM(encoded, start), 0);
        Py_ssize_t end = start + 1;
        while (end < size && PyTuple_GET_ITEM(PyList_GET_ITEM(encoded, end), 0) == topic) {
            end++;
        }
        /* counts[topic] as Python reads it (a Counter's __missing__ answers 0), plus the run. */
        PyObject *before = PyObject_GetItem(counts, topic);
        PyObject *run = before == NULL ? NULL : PyLong_FromSsize_t(end - start);
        PyObject *after = run == NULL ? NULL : PyNumber_Add(before, run);
        int status = after == NULL ? -1 : PyObject_SetItem(counts, topic, after);
        Py_XDECREF(before);
        Py_XDECREF(run);
        Py_XDECREF(after);
        if (status < 0) {
            return -1;
        }
        start = end;
    }
    return 0;
}

/* One output's Encoded, a new reference, the writer of its topic found through (and kept in) the cache. */
static PyObject *
encode_output(PyObject *output, PyObject *writers, PyTypeObject *encoded_type, PyObject **cached_topic,
              PyObject **cached_writer)
{
    PyObject *items = unpacked_output(output);
    if (items == NULL) {
        return NULL;
    }
    PyObject *topic = PyTuple_GET_ITEM(items, 0);
    /* Outputs come in runs of one topic: the same topic object finds the same writer without a lookup. */
    if (topic != *cached_topic) {
        PyObject *writer = topic_writer(writers, topic);
        if (writer == NULL) {
            Py_DECREF(items);
            return NULL;
        }
        Py_XSETREF(*cached_writer, writer);
        Py_XSETREF(*cached_topic, Py_NewRef(topic));
    }
    PyObject *value = write_record(*cached_writer, PyTuple_GET_ITEM(items, 2));
    /* encoded_type((topic, key, value)) without calling its __new__ (a NamedTuple's fields, in order). */
    PyObject *encoded = value == NULL ? NULL : encoded_type->tp_alloc(encoded_type, OUTPUT_FIELDS);
    if (encoded != NULL) {
        PyTuple_SET_ITEM(encoded, 0, Py_NewRef(topic));
        PyTuple_SET_ITEM(encoded, 1, Py_NewRef(PyTuple_GET_ITEM(items, 1)));
        PyTuple_SET_ITEM(encoded, 2, value);  /* the new reference, handed over */
    }
    else {
        Py_XDECREF(value);
    }
    Py_DECREF(items);
    return encoded;
}

/* The next output, a new reference, or NULL at the end (or on an error): outputs[*read] of a list, else next(iterator). */
static PyObject *
next_output(PyObject *outputs, PyObject *iterator, Py_ssize_t *read)
{
    if (iterator != NULL) {
        return PyIter_Next(iterator);
    }
    if (*read < PyList_GET_SIZE(outputs)) {
        return Py_NewRef(PyList_GET_ITEM(outputs, (*read)++));
    }
    return NULL;
}

static PyObject *
encode_outputs(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != ENCODE_OUTPUTS_ARGS) {
        PyErr_SetString(PyExc_TypeError, "encode_outputs(outputs, writers, encoded_type, counts) takes 4 arguments");
        return NULL;
    }
    PyObject *writers = args[1], *counts = args[3];
    PyTypeObject *encoded_type = (PyTypeObject *)args[2];
    if (!PyDict_Check(writers)) {
        PyErr_SetString(PyExc_TypeError, "encode_outputs: writers must be a dict of topic -> writer");
        return NULL;
    }
    if (!PyType_Check(encoded_type) || !PyType_IsSubtype(encoded_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "encode_outputs: encoded_type must be a tuple type (a NamedTuple)");
        return NULL;
    }
    /* A list (what standardisers return) is read by index, as its iterator would read it; anything else iterated. */
    PyObject *outputs = args[0], *iterator = NULL;
    if (!PyList_CheckExact(outputs) && (iterator = PyObject_GetIter(outputs)) == NULL) {
        return NULL;
    }
    /* Sized for a list's outputs up front; any more are appended. */
    Py_ssize_t expected = iterator == NULL ? PyList_GET_SIZE(outputs) : 0, read = 0, filled = 0;
    PyObject *encoded = PyList_New(expected);
    PyObject *cached_topic = NULL, *cached_writer = NULL, *output;
    while (encoded != NULL && (output = next_output(outputs, iterator, &read)) != NULL) {
        PyObject *item = encode_output(output, writers, encoded_type, &cached_topic, &cached_writer);
        Py_DECREF(output);
        if (item != NULL && filled < expected) {
            PyList_SET_ITEM(encoded, filled++, item);
            continue;
        }
        if (item == NULL || PyList_Append(encoded, item) < 0) {
            Py_CLEAR(encoded);
        }
        filled++;
        Py_XDECREF(item);
    }
    if (encoded != NULL && filled < expected) {
        /* The list shrank while it was read (a writer's Python code): the slots never filled are dropped. */
        Py_SET_SIZE(encoded, filled);
    }
    Py_XDECREF(iterator);
    Py_XDECREF(cached_topic);
    Py_XDECREF(cached_writer);
    /* Counted only once every record is encoded: a refused one leaves the counts as they were. */
    if (encoded != NULL && (PyErr_Occurred() || count_topics(encoded, counts) < 0)) {
        Py_CLEAR(encoded);
    }
    return encoded;
}

static PyMethodDef module_methods[] = {
    {"encode_outputs", (PyCFunction)(void (*)(void))encode_outputs, METH_FASTCALL,
     "encode_outputs(outputs, writers, encoded_type, counts)\n--\n\n"
     "[encoded_type((topic, key, writers[topic](record))) for topic, key, record in outputs], then\n"
     "counts[topic] += 1 per output, only once every record is encoded (a C Writer is written without a call)."},
    {NULL, NULL, 0, NULL},
};

/* ---------------------------------------------------------------- module */

/* Values whose digits, read both ways, prove the layout: signs, zero, one and several words, exponents. */
static const char *const LAYOUT_SAMPLES[] = {
    "0", "-0", "1", "-1", "0.10", "12345.67800000", "-0.00000001", "9999999999999999999",
    "10000000000000000000", "-12345678901234567.890123456789", "1E+3", "0.000000000000000001",
};
#define LAYOUT_SAMPLE_SCALE 18
/* Digits the check's scaleb keeps (the Python writer's context keeps 120): more than any sample has. */
#define LAYOUT_CONTEXT_PRECISION 120

#ifdef MPD_LAYOUT_KNOWN
/* Whether value's digits read give str(int(value.scaleb(scale, context))), as the Python writer computes it
 * (context: precise enough to keep every digit). */
static int
reads_as_python(PyObject *value, int scale, PyObject *context)
{
    unscaled_t magnitude;
    int negative;
    char ours[MAX_UNSCALED_DIGITS + 2];
    if (!unscaled_from_decimal(value, scale, &magnitude, &negative)) {
        return 0;
    }
    format_unscaled(magnitude, negative, ours);
    PyObject *scaled = PyObject_CallMethod(value, "scaleb", "iO", scale, context);
    PyObject *integer = scaled == NULL ? NULL : PyNumber_Long(scaled);
    PyObject *text = integer == NULL ? NULL : PyObject_Str(integer);
    const char *theirs = text == NULL ? NULL : PyUnicode_AsUTF8(text);
    int same = theirs != NULL && strcmp(ours, theirs) == 0;
    Py_XDECREF(text);
    Py_XDECREF(integer);
    Py_XDECREF(scaled);
    return same;
}
#endif

/* Whether reading a Decimal's digits gives the Python writer's unscaled integer, for every sample. */
static int
check_decimal_layout(PyObject *decimal, PyObject *decimal_type)
{
#ifdef MPD_LAYOUT_KNOWN
    if (((PyTypeObject *)decimal_type)->tp_basicsize != (Py_ssize_t)sizeof(DecimalLayout)) {
        return 0;
    }
    PyObject *context = PyObject_CallMethod(decimal, "Context", "i", LAYOUT_CONTEXT_PRECISION);
    decimal_layout_ok = 1;
    checked_decimal_type = (PyTypeObject *)decimal_type;
    int same = context != NULL;
    for (size_t i = 0; same && i < sizeof(LAYOUT_SAMPLES) / sizeof(LAYOUT_SAMPLES[0]); i++) {
        PyObject *value = PyObject_CallFunction(decimal_type, "s", LAYOUT_SAMPLES[i]);
        same = value != NULL && reads_as_python(value, LAYOUT_SAMPLE_SCALE, context);
        Py_XDECREF(value);
    }
    Py_XDECREF(context);
    PyErr_Clear();
    decimal_layout_ok = same;
    return same;
#else
    (void)decimal;
    (void)decimal_type;
    return 0;
#endif
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "l3_atom.avro._avro_writer_c",
    .m_doc = "The Avro binary writer of writer.py in C (writer.compile_record_writer builds it).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__avro_writer_c(void)
{
    POWERS_OF_TEN[0] = 1;
    for (int k = 1; k <= MAX_UNSCALED_DIGITS; k++) {
        POWERS_OF_TEN[k] = POWERS_OF_TEN[k - 1] * DECIMAL_BASE;
    }
    if (PyType_Ready(&WriterType) < 0 || PyType_Ready(&ValidatorType) < 0) {
        return NULL;
    }
    PyObject *decimal = PyImport_ImportModule("decimal");
    PyObject *decimal_type = decimal == NULL ? NULL : PyObject_GetAttrString(decimal, "Decimal");
    if (decimal_type == NULL) {
        Py_XDECREF(decimal);
        return NULL;
    }
    check_decimal_layout(decimal, decimal_type);
    /* Kept while the module lives: checked_decimal_type names it. */
    Py_DECREF(decimal);
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Writer", (PyObject *)&WriterType) < 0
        || PyModule_AddObjectRef(module, "Validator", (PyObject *)&ValidatorType) < 0
        || PyModule_AddIntConstant(module, "LONG", KIND_LONG) < 0
        || PyModule_AddIntConstant(module, "BOOLEAN", KIND_BOOLEAN) < 0
        || PyModule_AddIntConstant(module, "STRING", KIND_STRING) < 0
        || PyModule_AddIntConstant(module, "BYTES", KIND_BYTES) < 0
        || PyModule_AddIntConstant(module, "ENUM", KIND_ENUM) < 0
        || PyModule_AddIntConstant(module, "DECIMAL", KIND_DECIMAL) < 0
        || PyModule_AddIntConstant(module, "MAX_UNSCALED_DIGITS", MAX_UNSCALED_DIGITS) < 0
        || PyModule_AddIntConstant(module, "READS_DECIMAL_DIGITS", decimal_layout_ok) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
