// A MOCK of a Vectorize index binding, for testing the bridge's Vectorize path only.
//
// Miniflare has no Vectorize, so tests/bridge binds this in-memory stand-in (serve.mjs
// `vectorizeMocks`, a Miniflare wrapped binding) to check that every Vectorize call and
// its result travel through the bridge intact. It is not a Vectorize implementation and
// nothing here is a reference for Vectorize's behaviour: cosine similarity over a Map,
// dimensions fixed by the first vector, filters of plain equality only, and writes
// visible at once (Vectorize applies them asynchronously).

const indexes = new Map(); // binding name -> index, for the life of the isolate

export default function mockVectorize(env) {
  const name = env.NAME ?? "mock";
  if (!indexes.has(name)) indexes.set(name, { vectors: new Map(), dimensions: null, mutations: 0 });
  const ix = indexes.get(name);

  const mutation = () => ({ mutationId: `mock-mutation-${++ix.mutations}` });
  const check = (vectors) => {
    for (const v of vectors) {
      ix.dimensions ??= v.values.length;
      if (v.values.length !== ix.dimensions) {
        throw new Error(`mock Vectorize: vector ${v.id} has ${v.values.length} dimensions, the index has ${ix.dimensions}`);
      }
    }
  };
  const stored = (v) => ({ id: v.id, values: [...v.values], namespace: v.namespace, metadata: v.metadata });
  const cosine = (a, b) => {
    let dot = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    return dot / (Math.sqrt(na) * Math.sqrt(nb) || 1);
  };
  const search = (vector, options = {}) => {
    const { topK = 5, namespace, filter = {}, returnValues = false, returnMetadata = "none" } = options;
    const matches = [...ix.vectors.values()]
      .filter((v) => namespace === undefined || v.namespace === namespace)
      .filter((v) => Object.entries(filter).every(([k, want]) => (v.metadata ?? {})[k] === want))
      .map((v) => ({ v, score: cosine(vector, v.values) }))
      .sort((a, b) => b.score - a.score)
      .slice(0, topK)
      .map(({ v, score }) => {
        const m = { id: v.id, score };
        if (returnValues) m.values = [...v.values];
        if (returnMetadata !== "none" && v.metadata) m.metadata = v.metadata;
        if (v.namespace !== undefined) m.namespace = v.namespace;
        return m;
      });
    return { count: matches.length, matches };
  };

  return {
    async insert(vectors) {
      check(vectors);
      for (const v of vectors) if (!ix.vectors.has(v.id)) ix.vectors.set(v.id, stored(v));
      return mutation();
    },
    async upsert(vectors) {
      check(vectors);
      for (const v of vectors) ix.vectors.set(v.id, stored(v));
      return mutation();
    },
    async query(vector, options) {
      return search(vector, options);
    },
    async queryById(id, options) {
      const v = ix.vectors.get(id);
      return v ? search(v.values, options) : { count: 0, matches: [] };
    },
    async getByIds(ids) {
      return ids.filter((id) => ix.vectors.has(id)).map((id) => stored(ix.vectors.get(id)));
    },
    async deleteByIds(ids) {
      for (const id of ids) ix.vectors.delete(id);
      return mutation();
    },
    async describe() {
      return {
        dimensions: ix.dimensions ?? 0,
        vectorCount: ix.vectors.size,
        processedUpToDatetime: new Date().toISOString(),
        processedUpToMutation: `mock-mutation-${ix.mutations}`,
      };
    },
  };
}
