// Spectral custom function: date-time properties are named `*_at` (or `at`), DESIGN.md §2.
// Given a `properties` map.
module.exports = function timestampNames(props, _options, context) {
  const results = [];
  if (!props || typeof props !== 'object') return results;
  Object.keys(props).forEach(function (name) {
    const schema = props[name] || {};
    const isTimestamp = schema.format === 'date-time';
    if (isTimestamp && !/(^|_)at$/.test(name)) {
      results.push({ message: name + ': a date-time property is named *_at', path: context.path.concat([name]) });
    }
  });
  return results;
};
