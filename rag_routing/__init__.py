"""rag_routing: route every stage of a RAG pipeline to the cheapest component that still answers well."""
