// Spectral custom function: the conventions of DESIGN.md §2 that need more than one node of an
// operation to check. Given a path item; options.check names the convention:
//   "pagination"   a list (GET answering {items: [...], next_cursor | next_after}) takes `limit`
//                  and `cursor`
//   "etag"         a GET answering one resource (a body with `etag`, or a path ending in a
//                  parameter) declares the `ETag` header on 200
//   "if-match"     PATCH and DELETE take the `If-Match` header
//   "idempotency"  a POST answering 201 takes `Idempotency-Key`
//   "scope"        an operation under /api/ names a bearer scope
const METHODS = ['get', 'put', 'post', 'patch', 'delete'];

function deref(node, document) {
  let current = node;
  for (let hops = 0; current && typeof current === 'object' && typeof current.$ref === 'string' && hops < 20; hops++) {
    if (!current.$ref.startsWith('#/')) return current; // left unresolved by Spectral: nothing to check
    current = current.$ref.slice(2).split('/').reduce(function (acc, part) {
      return acc === undefined ? undefined : acc[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    }, document);
  }
  return current;
}

function parameters(pathItem, operation, document) {
  return [].concat(pathItem.parameters || [], operation.parameters || [])
    .map(function (p) { return deref(p, document); })
    .filter(Boolean);
}

function hasParameter(params, name, location) {
  return params.some(function (p) {
    return p.in === location && String(p.name).toLowerCase() === name.toLowerCase();
  });
}

function jsonSchema(response, document) {
  const content = (response && response.content) || {};
  const media = content['application/json'];
  return media ? deref(media.schema, document) : undefined;
}

function properties(schema, document) {
  // The properties of an object schema, including those of its allOf parts.
  const s = deref(schema, document) || {};
  let props = Object.assign({}, s.properties || {});
  (s.allOf || []).forEach(function (part) { props = Object.assign(props, properties(part, document)); });
  return props;
}

module.exports = function operationConventions(pathItem, options, context) {
  const document = context.document.data;
  const base = context.path;
  const pathKey = base[base.length - 1];
  const results = [];
  if (!pathItem || typeof pathItem !== 'object') return results;
  METHODS.forEach(function (method) {
    const operation = pathItem[method];
    if (!operation) return;
    const params = parameters(pathItem, operation, document);
    const responses = operation.responses || {};
    const at = base.concat([method]);
    const id = operation.operationId || method.toUpperCase() + ' ' + pathKey;
    switch (options.check) {
      case 'pagination': {
        if (method !== 'get') return;
        const props = properties(jsonSchema(deref(responses['200'], document), document), document);
        const items = deref(props.items, document);
        const isList = Boolean(items && items.type === 'array' && (props.next_cursor || props.next_after));
        if (isList && !(hasParameter(params, 'limit', 'query') && hasParameter(params, 'cursor', 'query'))) {
          results.push({ message: id + ': a list takes the query parameters limit and cursor', path: at });
        }
        break;
      }
      case 'etag': {
        if (method !== 'get' || !responses['200']) return;
        const ok = deref(responses['200'], document);
        const props = properties(jsonSchema(ok, document), document);
        const single = (props.etag && !props.items) || /\}$/.test(pathKey);
        const headers = Object.keys((ok && ok.headers) || {}).map(function (h) { return h.toLowerCase(); });
        if (single && headers.indexOf('etag') < 0) {
          results.push({ message: id + ': a single resource declares the ETag header on 200', path: at.concat(['responses', '200']) });
        }
        break;
      }
      case 'if-match': {
        if ((method === 'patch' || method === 'delete') && !hasParameter(params, 'If-Match', 'header')) {
          results.push({ message: id + ': a change takes the If-Match header', path: at });
        }
        break;
      }
      case 'idempotency': {
        if (method === 'post' && responses['201'] && !hasParameter(params, 'Idempotency-Key', 'header')) {
          results.push({ message: id + ': a create takes the Idempotency-Key header', path: at });
        }
        break;
      }
      case 'scope': {
        if (!/^\/api\//.test(pathKey)) return;
        const security = operation.security || document.security || [];
        const scoped = security.some(function (req) {
          return Object.keys(req).some(function (name) { return (req[name] || []).length > 0; });
        });
        if (!scoped) results.push({ message: id + ': an API operation names the bearer scope it needs', path: at });
        break;
      }
      default:
        results.push({ message: 'unknown check ' + options.check, path: base });
    }
  });
  return results;
};
