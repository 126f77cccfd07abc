/* A compiled-C workload for bench/cpu: sorting, hashing, string and pointer-chasing code as gcc -O2 emits it. */
typedef unsigned long u64;
typedef unsigned int u32;

static u32 table[4096];
static char text[8192];
struct node { struct node *next; u64 value; };
static struct node nodes[2048];

static u32 xorshift(u32 *s) { u32 x = *s; x ^= x << 13; x ^= x >> 17; x ^= x << 5; return *s = x; }

static void sort(u32 *a, int n) {
  for (int gap = n / 2; gap > 0; gap /= 2)
    for (int i = gap; i < n; i++) {
      u32 t = a[i]; int j = i;
      while (j >= gap && a[j - gap] > t) { a[j] = a[j - gap]; j -= gap; }
      a[j] = t;
    }
}

static u32 crc32(const char *p, int n) {
  u32 c = ~0u;
  for (int i = 0; i < n; i++) { c ^= (unsigned char)p[i]; for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & -(c & 1)); }
  return ~c;
}

static int str_count(const char *s, char ch) { int n = 0; while (*s) n += *s++ == ch; return n; }

u64 workload(int rounds) {
  u32 seed = 12345; u64 acc = 0;
  for (int r = 0; r < rounds; r++) {
    for (int i = 0; i < 4096; i++) table[i] = xorshift(&seed);
    sort(table, 4096);
    for (int i = 0; i < 8191; i++) text[i] = 'a' + xorshift(&seed) % 26;
    text[8191] = 0;
    acc += crc32(text, 8191) + str_count(text, 'e');
    for (int i = 0; i < 2048; i++) { nodes[i].next = &nodes[(i * 769 + 1) % 2048]; nodes[i].value = i; }
    struct node *p = &nodes[0];
    for (int i = 0; i < 100000; i++) { acc += p->value; p = p->next; }
    acc += table[r % 4096] / (r + 1) + (acc % 1000003);
  }
  return acc;
}
