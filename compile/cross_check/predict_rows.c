/*
 * predict_rows: score feature rows with a TL2cgen model library, on any CPU.
 *
 * Built for a target with its cross compiler and run under qemu-user, it shows that a
 * cross-built library predicts what the host-built one does.  It calls the batch entry
 * point the agent uses, iotwatch_predict_batch (compile/build.py and compile/forestc.py
 * both export it), one row at a time, or TL2cgen's own predict() when a library has no
 * batch entry point.  Rows and probabilities are text (one row per line, values
 * separated by blanks, "nan" for a missing value), so the files mean the same on little-
 * and big-endian CPUs.
 *
 * usage: predict_rows LIBRARY ROWS OUT [predict]   (predict: TL2cgen's entry point)
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

union Entry {
  int missing;
  double fvalue;
  int qvalue;
};

typedef void (*predict_fn)(union Entry *, int, double *);
typedef int32_t (*count_fn)(void);
typedef void (*classes_fn)(int32_t *);
typedef void (*batch_fn)(const float *, int64_t, double *);

/* The model behind either interface: score one row into result[0..n_class). */
struct Model {
  predict_fn predict;
  batch_fn predict_batch;
  int n_feature;
  int n_class;
};

static void *symbol(void *lib, const char *name) {
  void *found = dlsym(lib, name);
  if (found == NULL) {
    fprintf(stderr, "predict_rows: symbol %s missing: %s\n", name, dlerror());
    exit(3);
  }
  return found;
}

/* Reads one value; returns 0 at the end of the file, exits on anything unreadable. */
static int read_value(FILE *in, long row, int column, double *value) {
  char token[64];
  if (fscanf(in, "%63s", token) != 1) {
    return 0;
  }
  char *end = NULL;
  errno = 0;
  *value = strtod(token, &end);
  if (end == token || *end != '\0' || errno == ERANGE) {
    fprintf(stderr, "predict_rows: row %ld column %d: bad value '%s'\n", row, column, token);
    exit(4);
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 4 && !(argc == 5 && strcmp(argv[4], "predict") == 0)) {
    fprintf(stderr, "usage: predict_rows LIBRARY ROWS OUT [predict]\n");
    return 2;
  }

  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "predict_rows: cannot load %s: %s\n", argv[1], dlerror());
    return 3;
  }
  struct Model model = {0};
  if (argc == 4) {
    model.predict_batch = (batch_fn)dlsym(lib, "iotwatch_predict_batch");
  }
  if (model.predict_batch == NULL) {
    model.predict = (predict_fn)symbol(lib, "predict");
  }
  model.n_feature = ((count_fn)symbol(lib, "get_num_feature"))();
  if (((count_fn)symbol(lib, "get_num_target"))() != 1) {
    fprintf(stderr, "predict_rows: more than one target; a classifier has one\n");
    return 3;
  }
  int32_t n_class = 0;
  ((classes_fn)symbol(lib, "get_num_class"))(&n_class);
  model.n_class = n_class;
  int n_feature = model.n_feature;

  FILE *in = fopen(argv[2], "r");
  FILE *out = fopen(argv[3], "w");
  if (in == NULL || out == NULL) {
    fprintf(stderr, "predict_rows: cannot open %s or %s\n", argv[2], argv[3]);
    return 2;
  }
  union Entry *row = calloc((size_t)n_feature, sizeof(union Entry));
  float *row32 = calloc((size_t)n_feature, sizeof(float));
  double *result = calloc((size_t)n_class, sizeof(double));
  if (row == NULL || row32 == NULL || result == NULL) {
    return 5;
  }

  for (long r = 0;; r++) {
    for (int j = 0; j < n_feature; j++) {
      double value;
      if (!read_value(in, r, j, &value)) {
        if (j != 0) {
          fprintf(stderr, "predict_rows: row %ld ends after %d values\n", r, j);
          return 4;
        }
        fclose(out);
        return 0;
      }
      row32[j] = (float)value;
      if (value != value) {
        row[j].missing = -1;
      } else {
        row[j].fvalue = value;
      }
    }

    memset(result, 0, (size_t)n_class * sizeof(double));
    if (model.predict_batch != NULL) {
      model.predict_batch(row32, 1, result);
    } else {
      model.predict(row, 0, result);
    }
    for (int k = 0; k < n_class; k++) {
      fprintf(out, k ? " %.17g" : "%.17g", result[k]);
    }
    fputc('\n', out);
  }
}
