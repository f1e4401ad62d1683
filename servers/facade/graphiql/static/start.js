"use strict";
// Starts GraphiQL on /graphql. Nothing it edits is kept in the browser's storage: tabs hold the
// headers, and the headers hold a bearer token.
(function () {
  const memory = new Map();
  const storage = {
    getItem: function (key) { return memory.has(key) ? memory.get(key) : null; },
    setItem: function (key, value) { memory.set(key, String(value)); },
    removeItem: function (key) { memory.delete(key); },
    clear: function () { memory.clear(); },
    get length() { return memory.size; },
  };
  const root = document.getElementById("graphiql");
  const fetcher = GraphiQL.createFetcher({ url: root.dataset.endpoint });
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      storage: storage,
      defaultEditorToolsVisibility: "headers",
      shouldPersistHeaders: false,
      isHeadersEditorEnabled: true,
    })
  );
})();
