// The reference for tributary's query semantics: Apache Lucene itself.
//
// Indexes records under an Elasticsearch mapping the way Elasticsearch does
// (standard analyzer on text fields, keywords whole and optionally
// lowercased, numbers and dates as points, a 100-position gap between the
// values of a multi-valued text field), parses each query with Lucene's
// classic query parser configured as Elasticsearch's `query_string` (default
// field `*`, operator OR, lenient, leading wildcards, bare terms analysed
// together), with the rules Elasticsearch adds on top (every field for `*`,
// `_exists_`, `field:>v`, AUTO fuzziness and 50 expansions, date math,
// pure-negative groups matching all-but), and prints one total per query.
//
//   java -cp lucene-core.jar:lucene-queryparser.jar:lucene-analyzers-common.jar:gson.jar:OUT \
//     org.apache.lucene.queryparser.classic.Reference MAPPING RECORDS QUERIES NOW_MS
//
// MAPPING is a mapping file, or `dynamic` for Elasticsearch's dynamic
// mapping of the records (each field typed by its first value: strings that
// read as dates `date`, other strings `text` with a `keyword` sub-field,
// whole numbers `long`, decimals `float`, booleans `boolean`).
//
// Where Elasticsearch 8 (on Lucene 9) differs from Lucene 8, the
// difference is written out here: a backslash before a letter other than
// d, D, s, S, w, W in a regular expression is an error (lenient: no match);
// a value of a boolean field other than `true`/`false` matches nothing;
// numbers are parsed as Elasticsearch's NumberFieldMapper parses them;
// fuzziness other than 0, 1, 2 or AUTO is a parse error; a regular
// expression is normalized only on keyword fields with a normalizer.
//
// Output: one line per query, the total, or `ERROR <message>` for a query
// Lucene cannot parse. Lives in Lucene's package to override the
// package-private `handleBareFuzzy`, as Elasticsearch's parser does.
package org.apache.lucene.queryparser.classic;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.DayOfWeek;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalTime;
import java.time.YearMonth;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.temporal.TemporalAdjusters;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.LowerCaseFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.core.KeywordTokenizer;
import org.apache.lucene.analysis.standard.StandardTokenizer;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.document.Document;
import org.apache.lucene.document.DoublePoint;
import org.apache.lucene.document.FloatPoint;
import org.apache.lucene.document.Field;
import org.apache.lucene.document.LongPoint;
import org.apache.lucene.document.StringField;
import org.apache.lucene.document.TextField;
import org.apache.lucene.index.DirectoryReader;
import org.apache.lucene.index.IndexWriter;
import org.apache.lucene.index.IndexWriterConfig;
import org.apache.lucene.index.Term;
import org.apache.lucene.search.BooleanClause;
import org.apache.lucene.search.BooleanQuery;
import org.apache.lucene.search.DisjunctionMaxQuery;
import org.apache.lucene.search.FuzzyQuery;
import org.apache.lucene.search.IndexSearcher;
import org.apache.lucene.search.MatchAllDocsQuery;
import org.apache.lucene.search.MatchNoDocsQuery;
import org.apache.lucene.search.PhraseQuery;
import org.apache.lucene.search.PrefixQuery;
import org.apache.lucene.search.Query;
import org.apache.lucene.search.RegexpQuery;
import org.apache.lucene.search.TermQuery;
import org.apache.lucene.search.TermRangeQuery;
import org.apache.lucene.search.WildcardQuery;
import org.apache.lucene.store.ByteBuffersDirectory;
import org.apache.lucene.util.BytesRef;

public class Reference extends QueryParser {
  enum Type { TEXT, KEYWORD, LONG, FLOAT, DOUBLE, DATE, BOOLEAN, OTHER }

  static final class Mapped {
    final String path, source;
    final Type type;
    final boolean lowercase;
    final int ignoreAbove;
    /** The range of a whole-number type (`integer` is narrower than `long`). */
    final long min, max;

    Mapped(String path, String source, Type type, boolean lowercase, int ignoreAbove, long min, long max) {
      this.path = path;
      this.source = source;
      this.type = type;
      this.lowercase = lowercase;
      this.ignoreAbove = ignoreAbove;
      this.min = min;
      this.max = max;
    }

    boolean isString() {
      return type == Type.TEXT || type == Type.KEYWORD;
    }

    boolean normalizes() {
      return type == Type.TEXT || (type == Type.KEYWORD && lowercase);
    }
  }

  static final Map<String, Mapped> FIELDS = new LinkedHashMap<>();
  static final Set<String> OBJECTS = new TreeSet<>();
  static final String EXISTS = "_exists";

  /** The standard analyzer (no stop words) on text fields, keywords whole. */
  static final class MappingAnalyzer extends Analyzer {
    @Override
    protected TokenStreamComponents createComponents(String field) {
      Mapped mapped = FIELDS.get(field);
      if (mapped != null && mapped.type == Type.TEXT) {
        StandardTokenizer tokenizer = new StandardTokenizer();
        return new TokenStreamComponents(tokenizer, new LowerCaseFilter(tokenizer));
      }
      KeywordTokenizer tokenizer = new KeywordTokenizer();
      if (mapped != null && mapped.lowercase) {
        return new TokenStreamComponents(tokenizer, new LowerCaseFilter(tokenizer));
      }
      return new TokenStreamComponents(tokenizer);
    }

    @Override
    protected TokenStream normalize(String field, TokenStream in) {
      Mapped mapped = FIELDS.get(field);
      return mapped != null && mapped.normalizes() ? new LowerCaseFilter(in) : in;
    }

    @Override
    public int getPositionIncrementGap(String field) {
      return 100;
    }
  }

  final long now;
  final Analyzer analyzer;

  Reference(Analyzer analyzer, long now) {
    super("*", analyzer);
    this.analyzer = analyzer;
    this.now = now;
    setSplitOnWhitespace(false);
    setAllowLeadingWildcard(true);
    setDefaultOperator(QueryParser.OR_OPERATOR);
    setAutoGeneratePhraseQueries(false);
  }

  // ---- mapping ----------------------------------------------------------

  static void readProperties(JsonObject properties, String prefix) {
    for (Map.Entry<String, JsonElement> entry : properties.entrySet()) {
      String path = prefix.isEmpty() ? entry.getKey() : prefix + "." + entry.getKey();
      JsonObject def = entry.getValue().getAsJsonObject();
      String type = def.has("type") ? def.get("type").getAsString() : "object";
      if (def.has("properties")) {
        OBJECTS.add(path);
        readProperties(def.getAsJsonObject("properties"), path);
        continue;
      }
      if (type.equals("object") || type.equals("nested")) {
        OBJECTS.add(path);
        continue;
      }
      FIELDS.put(path, mapped(path, path, type, def));
      if (def.has("fields")) {
        for (Map.Entry<String, JsonElement> sub : def.getAsJsonObject("fields").entrySet()) {
          String subPath = path + "." + sub.getKey();
          JsonObject subDef = sub.getValue().getAsJsonObject();
          FIELDS.put(subPath, mapped(subPath, path, subDef.get("type").getAsString(), subDef));
        }
      }
    }
  }

  static Mapped mapped(String path, String source, String type, JsonObject def) {
    Type t;
    long min = Long.MIN_VALUE, max = Long.MAX_VALUE;
    switch (type) {
      case "text": t = Type.TEXT; break;
      case "keyword": t = Type.KEYWORD; break;
      case "long": t = Type.LONG; break;
      case "integer": t = Type.LONG; min = Integer.MIN_VALUE; max = Integer.MAX_VALUE; break;
      case "short": t = Type.LONG; min = Short.MIN_VALUE; max = Short.MAX_VALUE; break;
      case "byte": t = Type.LONG; min = Byte.MIN_VALUE; max = Byte.MAX_VALUE; break;
      case "float": t = Type.FLOAT; break;
      case "double": case "half_float": case "scaled_float": t = Type.DOUBLE; break;
      case "date": t = Type.DATE; break;
      case "boolean": t = Type.BOOLEAN; break;
      default: t = Type.OTHER;
    }
    boolean lowercase = def.has("normalizer") && def.get("normalizer").getAsString().equals("lowercase");
    int ignoreAbove = def.has("ignore_above") ? def.get("ignore_above").getAsInt() : Integer.MAX_VALUE;
    return new Mapped(path, source, t, lowercase, ignoreAbove, min, max);
  }

  /** Elasticsearch's dynamic mapping: each new field typed by its first value. */
  static void dynamic(List<String> lines) {
    for (String line : lines) {
      if (line.trim().isEmpty()) continue;
      Map<String, List<JsonElement>> flat = new LinkedHashMap<>();
      flatten(flat, "", JsonParser.parseString(line).getAsJsonObject());
      for (Map.Entry<String, List<JsonElement>> e : flat.entrySet()) {
        String path = e.getKey();
        if (FIELDS.containsKey(path)) continue;
        JsonElement first = e.getValue().get(0);
        for (int i = path.indexOf('.'); i > 0; i = path.indexOf('.', i + 1)) OBJECTS.add(path.substring(0, i));
        com.google.gson.JsonPrimitive value = first.getAsJsonPrimitive();
        JsonObject def = new JsonObject();
        if (value.isBoolean()) {
          FIELDS.put(path, mapped(path, path, "boolean", def));
        } else if (value.isNumber()) {
          String literal = value.getAsString();
          boolean decimal = literal.contains(".") || literal.contains("e") || literal.contains("E");
          FIELDS.put(path, mapped(path, path, decimal ? "float" : "long", def));
        } else if (isDate(value.getAsString())) {
          FIELDS.put(path, mapped(path, path, "date", def));
        } else {
          FIELDS.put(path, mapped(path, path, "text", def));
          JsonObject keyword = new JsonObject();
          keyword.addProperty("ignore_above", 256);
          FIELDS.put(path + ".keyword", mapped(path + ".keyword", path, "keyword", keyword));
        }
      }
    }
  }

  /** Date detection: `strict_date_optional_time` (never epoch milliseconds). */
  static boolean isDate(String text) {
    if (text.matches("-?\\d+") && !text.matches("\\d{4}")) return false;
    try {
      Dates.parseDate(text, false);
      return true;
    } catch (IllegalArgumentException e) {
      return false;
    }
  }

  // ---- records ----------------------------------------------------------

  static void flatten(Map<String, List<JsonElement>> out, String path, JsonElement value) {
    if (value == null || value.isJsonNull()) return;
    if (value.isJsonObject()) {
      for (Map.Entry<String, JsonElement> e : value.getAsJsonObject().entrySet()) {
        flatten(out, path.isEmpty() ? e.getKey() : path + "." + e.getKey(), e.getValue());
      }
    } else if (value.isJsonArray()) {
      for (JsonElement item : value.getAsJsonArray()) flatten(out, path, item);
    } else {
      out.computeIfAbsent(path, k -> new ArrayList<>()).add(value);
    }
  }

  static Document document(JsonObject record) {
    Map<String, List<JsonElement>> flat = new LinkedHashMap<>();
    flatten(flat, "", record);
    Document doc = new Document();
    for (Mapped mapped : FIELDS.values()) {
      List<JsonElement> values = flat.get(mapped.source);
      if (values == null) continue;
      boolean added = false;
      for (JsonElement v : values) {
        String text = v.getAsString();
        switch (mapped.type) {
          case TEXT:
            doc.add(new TextField(mapped.path, text, Field.Store.NO));
            added = true;
            break;
          case KEYWORD:
            if (text.codePointCount(0, text.length()) > mapped.ignoreAbove) break;
            doc.add(new StringField(mapped.path, mapped.lowercase ? lowercase(text) : text, Field.Store.NO));
            added = true;
            break;
          case LONG:
            try {
              doc.add(new LongPoint(mapped.path, (long) Double.parseDouble(text)));
              added = true;
            } catch (NumberFormatException e) { }
            break;
          case FLOAT:
            try {
              doc.add(new FloatPoint(mapped.path, Float.parseFloat(text)));
              added = true;
            } catch (NumberFormatException e) { }
            break;
          case DOUBLE:
            try {
              doc.add(new DoublePoint(mapped.path, Double.parseDouble(text)));
              added = true;
            } catch (NumberFormatException e) { }
            break;
          case DATE:
            try {
              doc.add(new LongPoint(mapped.path, Dates.parseDate(text, false)));
              added = true;
            } catch (IllegalArgumentException e) { }
            break;
          case BOOLEAN:
            if (text.equals("true") || text.equals("false")) {
              doc.add(new StringField(mapped.path, text.equals("true") ? "T" : "F", Field.Store.NO));
              added = true;
            }
            break;
          default:
        }
      }
      if (added) doc.add(new StringField(EXISTS, mapped.path, Field.Store.NO));
    }
    return doc;
  }

  /** The `lowercase` normalizer: LowerCaseFilter, code point by code point. */
  static String lowercase(String text) {
    StringBuilder out = new StringBuilder(text.length());
    text.codePoints().forEach(c -> out.appendCodePoint(Character.toLowerCase(c)));
    return out.toString();
  }

  // ---- Elasticsearch's query_string on top of Lucene's parser ------------

  interface PerField {
    Query on(Mapped field) throws ParseException;
  }

  /** `*` (or the default field): every searchable field; a pattern: the fields it matches. */
  List<Mapped> resolve(String field) {
    List<Mapped> out = new ArrayList<>();
    if (field == null || field.equals("*")) {
      for (Mapped m : FIELDS.values()) if (m.type != Type.OTHER && !m.path.startsWith("_")) out.add(m);
    } else if (field.contains("*")) {
      for (Mapped m : FIELDS.values()) if (glob(field, m.path) && !m.path.startsWith("_")) out.add(m);
    } else if (FIELDS.containsKey(field)) {
      out.add(FIELDS.get(field));
    }
    return out;
  }

  static boolean glob(String pattern, String text) {
    return text.matches(("\\Q" + pattern + "\\E").replace("*", "\\E.*\\Q"));
  }

  Query multiField(String field, PerField perField) throws ParseException {
    List<Mapped> fields = resolve(field);
    if (fields.isEmpty()) return new MatchNoDocsQuery("unmapped field");
    List<Query> queries = new ArrayList<>();
    for (Mapped m : fields) {
      Query q = perField.on(m);
      if (q != null) queries.add(q);
    }
    if (queries.isEmpty()) return null;
    if (queries.size() == 1) return queries.get(0);
    return new DisjunctionMaxQuery(queries, 0f);
  }

  Query exists(String field) {
    BooleanQuery.Builder b = new BooleanQuery.Builder();
    List<Mapped> fields = new ArrayList<>();
    if (field.contains("*")) {
      for (Mapped m : FIELDS.values()) if (glob(field, m.path)) fields.add(m);
    } else if (OBJECTS.contains(field)) {
      for (Mapped m : FIELDS.values()) if (m.path.startsWith(field + ".")) fields.add(m);
    } else if (FIELDS.containsKey(field)) {
      fields.add(FIELDS.get(field));
    }
    if (fields.isEmpty()) return new MatchNoDocsQuery("unmapped field");
    for (Mapped m : fields) b.add(new TermQuery(new Term(EXISTS, m.path)), BooleanClause.Occur.SHOULD);
    return b.build();
  }

  String normalize(Mapped m, String text) {
    return m.normalizes() ? analyzer.normalize(m.path, text).utf8ToString() : text;
  }

  List<String> tokens(Mapped m, String text) {
    List<String> out = new ArrayList<>();
    try (TokenStream ts = analyzer.tokenStream(m.path, text)) {
      CharTermAttribute term = ts.addAttribute(CharTermAttribute.class);
      ts.reset();
      while (ts.incrementToken()) out.add(term.toString());
      ts.end();
    } catch (IOException e) {
      throw new RuntimeException(e);
    }
    return out;
  }

  static Query none() {
    return new MatchNoDocsQuery("lenient");
  }

  /** A term (slop == null) or phrase on one field, as Elasticsearch's match query builds it. */
  Query termOn(Mapped m, String text, Integer slop) {
    switch (m.type) {
      case TEXT: {
        List<String> tokens = tokens(m, text);
        if (tokens.isEmpty()) return null;
        if (tokens.size() == 1) return new TermQuery(new Term(m.path, tokens.get(0)));
        if (slop == null) {
          BooleanQuery.Builder b = new BooleanQuery.Builder();
          for (String t : tokens) b.add(new TermQuery(new Term(m.path, t)), BooleanClause.Occur.SHOULD);
          return b.build();
        }
        // A negative slop: the phrase query refuses it, and lenient
        // Elasticsearch matches nothing.
        if (slop < 0) return none();
        return new PhraseQuery(slop, m.path, tokens.toArray(new String[0]));
      }
      case KEYWORD:
        return new TermQuery(new Term(m.path, normalize(m, text)));
      case LONG:
        try {
          if (hasDecimalPart(text)) return none();
          return LongPoint.newExactQuery(m.path, toLong(m, text));
        } catch (IllegalArgumentException e) {
          return none();
        }
      case FLOAT:
        try {
          return FloatPoint.newExactQuery(m.path, toFloat(text));
        } catch (IllegalArgumentException e) {
          return none();
        }
      case DOUBLE:
        try {
          return DoublePoint.newExactQuery(m.path, toDouble(text));
        } catch (IllegalArgumentException e) {
          return none();
        }
      case DATE:
        return dateRange(m, text, text, true, true);
      case BOOLEAN:
        if (text.equals("true")) return new TermQuery(new Term(m.path, "T"));
        if (text.equals("false")) return new TermQuery(new Term(m.path, "F"));
        return none();
      default:
        return none();
    }
  }

  // ---- numbers as Elasticsearch's NumberFieldMapper parses them ---------

  static boolean hasDecimalPart(String text) {
    return Double.parseDouble(text) % 1 != 0;
  }

  /** `objectToLong` then `Numbers.toLong` (coercing): no trimming, `1e2` is 100. */
  static long toLong(Mapped m, String text) {
    double d = Double.parseDouble(text);
    if (d < m.min || d > m.max) throw new IllegalArgumentException("out of range");
    long value;
    try {
      value = Long.parseLong(text);
    } catch (NumberFormatException e) {
      java.math.BigDecimal big = new java.math.BigDecimal(text);
      value = big.toBigInteger().longValue();
      if (big.compareTo(java.math.BigDecimal.valueOf(m.max)) > 0
          || big.compareTo(java.math.BigDecimal.valueOf(m.min)) < 0) {
        throw new IllegalArgumentException("out of range");
      }
    }
    if (value < m.min || value > m.max) throw new IllegalArgumentException("out of range");
    return value;
  }

  static double toDouble(String text) {
    double d = Double.parseDouble(text);
    if (!Double.isFinite(d)) throw new IllegalArgumentException("not finite");
    return d;
  }

  static float toFloat(String text) {
    float f = Float.parseFloat(text);
    if (!Float.isFinite(f)) throw new IllegalArgumentException("not finite");
    return f;
  }

  Query dateRange(Mapped m, String lower, String upper, boolean incLower, boolean incUpper) {
    try {
      long lo = lower == null ? Long.MIN_VALUE : Dates.parse(lower, !incLower, now) + (incLower ? 0 : 1);
      long hi = upper == null ? Long.MAX_VALUE : Dates.parse(upper, incUpper, now) - (incUpper ? 0 : 1);
      return LongPoint.newRangeQuery(m.path, lo, hi);
    } catch (IllegalArgumentException e) {
      return none();
    }
  }

  Query rangeOn(Mapped m, String lower, String upper, boolean incLower, boolean incUpper) {
    switch (m.type) {
      case TEXT:
      case KEYWORD:
        return new TermRangeQuery(m.path,
            lower == null ? null : new BytesRef(normalize(m, lower)),
            upper == null ? null : new BytesRef(normalize(m, upper)), incLower, incUpper);
      case LONG:
        // NumberFieldMapper's rangeQuery: a decimal bound is truncated, then
        // moved inwards; an exclusive whole bound moves by one.
        try {
          long lo = m.min, hi = m.max;
          if (lower != null) {
            lo = toLong(m, lower);
            boolean decimal = hasDecimalPart(lower);
            if ((!decimal && !incLower) || (decimal && Double.parseDouble(lower) > 0)) {
              if (lo == m.max) return none();
              lo++;
            }
          }
          if (upper != null) {
            hi = toLong(m, upper);
            boolean decimal = hasDecimalPart(upper);
            if ((!decimal && !incUpper) || (decimal && Double.parseDouble(upper) < 0)) {
              if (hi == m.min) return none();
              hi--;
            }
          }
          return LongPoint.newRangeQuery(m.path, lo, hi);
        } catch (IllegalArgumentException e) {
          return none();
        }
      case FLOAT:
        try {
          float lo = lower == null ? Float.NEGATIVE_INFINITY : toFloat(lower);
          float hi = upper == null ? Float.POSITIVE_INFINITY : toFloat(upper);
          if (lower != null && !incLower) lo = FloatPoint.nextUp(lo);
          if (upper != null && !incUpper) hi = FloatPoint.nextDown(hi);
          return FloatPoint.newRangeQuery(m.path, lo, hi);
        } catch (IllegalArgumentException e) {
          return none();
        }
      case DOUBLE:
        try {
          double lo = lower == null ? Double.NEGATIVE_INFINITY : toDouble(lower);
          double hi = upper == null ? Double.POSITIVE_INFINITY : toDouble(upper);
          if (lower != null && !incLower) lo = DoublePoint.nextUp(lo);
          if (upper != null && !incUpper) hi = DoublePoint.nextDown(hi);
          return DoublePoint.newRangeQuery(m.path, lo, hi);
        } catch (IllegalArgumentException e) {
          return none();
        }
      case DATE:
        return dateRange(m, lower, upper, incLower, incUpper);
      case BOOLEAN:
        // Elasticsearch 8 reads only `true` and `false`.
        for (String bound : new String[] {lower, upper}) {
          if (bound != null && !bound.equals("true") && !bound.equals("false")) return none();
        }
        return new TermRangeQuery(m.path,
            lower == null ? null : new BytesRef(lower.equals("true") ? "T" : "F"),
            upper == null ? null : new BytesRef(upper.equals("true") ? "T" : "F"), incLower, incUpper);
      default:
        return none();
    }
  }

  @Override
  protected Query getFieldQuery(String field, String queryText, boolean quoted) throws ParseException {
    if ("_exists_".equals(field)) return exists(queryText);
    if (quoted) return getFieldQuery(field, queryText, getPhraseSlop());
    if (field != null && queryText.length() > 1) {
      if (queryText.charAt(0) == '>') {
        if (queryText.length() > 2 && queryText.charAt(1) == '=') {
          return getRangeQuery(field, queryText.substring(2), null, true, true);
        }
        return getRangeQuery(field, queryText.substring(1), null, false, true);
      } else if (queryText.charAt(0) == '<') {
        if (queryText.length() > 2 && queryText.charAt(1) == '=') {
          return getRangeQuery(field, null, queryText.substring(2), true, true);
        }
        return getRangeQuery(field, null, queryText.substring(1), true, false);
      }
    }
    return multiField(field, m -> termOn(m, queryText, null));
  }

  @Override
  protected Query getFieldQuery(String field, String queryText, int slop) throws ParseException {
    if ("_exists_".equals(field)) return exists(queryText);
    return multiField(field, m -> termOn(m, queryText, slop));
  }

  @Override
  protected Query getRangeQuery(String field, String part1, String part2, boolean startInclusive,
      boolean endInclusive) throws ParseException {
    String lower = "*".equals(part1) ? null : part1;
    String upper = "*".equals(part2) ? null : part2;
    return multiField(field, m -> rangeOn(m, lower, upper, startInclusive, endInclusive));
  }

  @Override
  protected Query getWildcardQuery(String field, String termStr) throws ParseException {
    if (termStr.equals("*") && field != null) {
      if (field.equals("*")) return new MatchAllDocsQuery();
      return exists(field);
    }
    return multiField(field, m -> {
      if (termStr.equals("*")) return exists(m.path);
      if (!m.isString()) return none();
      return new WildcardQuery(new Term(m.path, m.normalizes() ? termStr.toLowerCase() : termStr));
    });
  }

  @Override
  protected Query getPrefixQuery(String field, String termStr) throws ParseException {
    return multiField(field, m -> m.isString() ? new PrefixQuery(new Term(m.path, normalize(m, termStr))) : none());
  }

  static String lucene8(String termStr) {
    // Lucene 9: a backslash before a letter must name a class (\d \s \w,
    // negated in capitals), any other is an error; Lucene 8 read all of
    // them as the letter, so the classes are spelled out for it here.
    StringBuilder lucene8 = new StringBuilder();
    boolean inClass = false;
    for (int i = 0; i < termStr.length(); i++) {
      char c = termStr.charAt(i);
      if (c == '\\' && i + 1 < termStr.length()) {
        char next = termStr.charAt(++i);
        String ranges = next == 'd' || next == 'D' ? "0-9"
            : next == 's' || next == 'S' ? " \t\n\r"
            : next == 'w' || next == 'W' ? "a-zA-Z_0-9" : null;
        if (ranges == null) {
          if (Character.isLetter(next)) return null;
          lucene8.append(c).append(next);
        } else if (inClass) {
          if (Character.isUpperCase(next)) return null;
          lucene8.append(ranges);
        } else {
          lucene8.append(Character.isUpperCase(next) ? "[^" : "[").append(ranges).append(']');
        }
        continue;
      }
      if (c == '[' && !inClass) inClass = true;
      else if (c == ']' && inClass) inClass = false;
      else if (c == '"' && !inClass) {
        int close = termStr.indexOf('"', i + 1);
        if (close > 0) {
          lucene8.append(termStr, i, close + 1);
          i = close;
          continue;
        }
      }
      lucene8.append(c);
    }
    return lucene8.toString();
  }

  @Override
  protected Query getRegexpQuery(String field, String termStr) throws ParseException {
    return multiField(field, m -> {
      if (!m.isString()) return none();
      // Elasticsearch normalizes the pattern on keywords with a normalizer
      // only; on text fields it runs as written against lowercased terms.
      String pattern = lucene8(m.type == Type.KEYWORD && m.lowercase ? normalize(m, termStr) : termStr);
      if (pattern == null) return none();
      try {
        return new RegexpQuery(new Term(m.path, pattern));
      } catch (IllegalArgumentException e) {
        return none();
      }
    });
  }

  @Override
  protected Query getFuzzyQuery(String field, String termStr, float minSimilarity) throws ParseException {
    int edits = (int) minSimilarity;
    return multiField(field, m -> {
      if (!m.isString()) return none();
      Term term = new Term(m.path, normalize(m, termStr));
      if (edits == 0) return new TermQuery(term);
      return new FuzzyQuery(term, edits, 0, 50, true);
    });
  }

  /** Elasticsearch: `~` alone is AUTO fuzziness, `~N` is N edits (at most 2). */
  @Override
  Query handleBareFuzzy(String field, Token fuzzySlop, String termImage) throws ParseException {
    String slop = fuzzySlop.image.substring(1);
    int edits;
    if (slop.isEmpty() || slop.equalsIgnoreCase("auto")) {
      int len = termImage.codePointCount(0, termImage.length());
      edits = len < 3 ? 0 : len < 6 ? 1 : 2;
    } else {
      // Fuzziness.fromString: a whole 0, 1 or 2, else an error.
      float parsed;
      try {
        parsed = Float.parseFloat(slop);
      } catch (NumberFormatException e) {
        throw new ParseException("fuzziness cannot be [" + slop + "]");
      }
      if (parsed % 1 != 0 || parsed < 0 || parsed > 2) {
        throw new ParseException("fuzziness needs to be one of 0, 1 or 2 but was " + slop);
      }
      edits = (int) parsed;
    }
    return getFuzzyQuery(field, termImage, edits);
  }

  /** Elasticsearch: a group of only prohibited clauses matches all but them. */
  @Override
  protected Query getBooleanQuery(List<BooleanClause> clauses) throws ParseException {
    Query q = super.getBooleanQuery(clauses);
    if (q instanceof BooleanQuery) {
      List<BooleanClause> all = ((BooleanQuery) q).clauses();
      if (!all.isEmpty() && all.stream().allMatch(BooleanClause::isProhibited)) {
        BooleanQuery.Builder b = new BooleanQuery.Builder();
        for (BooleanClause c : all) b.add(c);
        b.add(new MatchAllDocsQuery(), BooleanClause.Occur.FILTER);
        return b.build();
      }
    }
    return q;
  }

  // ---- dates: strict_date_optional_time||epoch_millis, and date math ------

  static final class Dates {
    static long parse(String text, boolean roundUp, long now) {
      long anchor;
      String math;
      if (text.startsWith("now")) {
        anchor = now;
        math = text.substring(3);
      } else {
        int at = text.indexOf("||");
        if (at < 0) return parseDate(text, roundUp);
        anchor = parseDate(text.substring(0, at), false);
        math = text.substring(at + 2);
      }
      ZonedDateTime t = Instant.ofEpochMilli(anchor).atZone(ZoneOffset.UTC);
      int i = 0;
      while (i < math.length()) {
        char op = math.charAt(i++);
        if (op != '+' && op != '-' && op != '/') throw new IllegalArgumentException("bad math");
        int num = 1;
        if (op != '/') {
          int start = i;
          while (i < math.length() && Character.isDigit(math.charAt(i))) i++;
          if (i > start) num = Integer.parseInt(math.substring(start, i));
        }
        if (i >= math.length()) throw new IllegalArgumentException("missing unit");
        char unit = math.charAt(i++);
        if (op == '/') {
          switch (unit) {
            case 'y': t = t.withDayOfYear(1).with(LocalTime.MIN); if (roundUp) t = t.plusYears(1); break;
            case 'M': t = t.withDayOfMonth(1).with(LocalTime.MIN); if (roundUp) t = t.plusMonths(1); break;
            case 'w': t = t.with(TemporalAdjusters.previousOrSame(DayOfWeek.MONDAY)).with(LocalTime.MIN); if (roundUp) t = t.plusWeeks(1); break;
            case 'd': t = t.with(LocalTime.MIN); if (roundUp) t = t.plusDays(1); break;
            case 'h': case 'H': t = t.withMinute(0).withSecond(0).withNano(0); if (roundUp) t = t.plusHours(1); break;
            case 'm': t = t.withSecond(0).withNano(0); if (roundUp) t = t.plusMinutes(1); break;
            case 's': t = t.withNano(0); if (roundUp) t = t.plusSeconds(1); break;
            default: throw new IllegalArgumentException("unit");
          }
          if (roundUp) t = t.minusNanos(1);
        } else {
          int n = op == '-' ? -num : num;
          switch (unit) {
            case 'y': t = t.plusYears(n); break;
            case 'M': t = t.plusMonths(n); break;
            case 'w': t = t.plusWeeks(n); break;
            case 'd': t = t.plusDays(n); break;
            case 'h': case 'H': t = t.plusHours(n); break;
            case 'm': t = t.plusMinutes(n); break;
            case 's': t = t.plusSeconds(n); break;
            default: throw new IllegalArgumentException("unit");
          }
        }
      }
      return t.toInstant().toEpochMilli();
    }

    static long parseDate(String text, boolean roundUp) {
      java.util.regex.Matcher m = java.util.regex.Pattern.compile(
          "(\\d{4})(?:-(\\d{2})(?:-(\\d{2})(?:T(\\d{2})(?::(\\d{2})(?::(\\d{2})(?:[.,](\\d{1,9}))?)?)?"
              + "(Z|[+-]\\d{2}(?::?\\d{2})?)?)?)?)?").matcher(text);
      if (m.matches()) {
        try {
          int year = Integer.parseInt(m.group(1));
          int month = m.group(2) != null ? Integer.parseInt(m.group(2)) : roundUp ? 12 : 1;
          int lastDay = YearMonth.of(year, month).lengthOfMonth();
          int day = m.group(3) != null ? Integer.parseInt(m.group(3)) : roundUp ? lastDay : 1;
          int hour = m.group(4) != null ? Integer.parseInt(m.group(4)) : roundUp ? 23 : 0;
          int minute = m.group(5) != null ? Integer.parseInt(m.group(5)) : roundUp ? 59 : 0;
          int second = m.group(6) != null ? Integer.parseInt(m.group(6)) : roundUp ? 59 : 0;
          int nanos = m.group(7) != null
              ? Integer.parseInt(String.format("%-9s", m.group(7)).replace(' ', '0'))
              : roundUp ? 999_999_999 : 0;
          ZoneOffset zone = ZoneOffset.UTC;
          String z = m.group(8);
          if (z != null && !z.equals("Z")) {
            String digits = z.substring(1).replace(":", "");
            int h = Integer.parseInt(digits.substring(0, 2));
            int mm = digits.length() > 2 ? Integer.parseInt(digits.substring(2)) : 0;
            zone = z.charAt(0) == '-' ? ZoneOffset.ofHoursMinutes(-h, -mm) : ZoneOffset.ofHoursMinutes(h, mm);
          }
          return LocalDate.of(year, month, day).atTime(hour, minute, second, nanos)
              .atOffset(zone).toInstant().toEpochMilli();
        } catch (java.time.DateTimeException e) {
          throw new IllegalArgumentException(e);
        }
      }
      if (text.matches("-?\\d+")) {
        try {
          return Long.parseLong(text);
        } catch (NumberFormatException e) {
          throw new IllegalArgumentException(e);
        }
      }
      throw new IllegalArgumentException("not a date: " + text);
    }
  }

  // ---- main -------------------------------------------------------------

  public static void main(String[] args) throws Exception {
    List<String> records = Files.readAllLines(Paths.get(args[1]), StandardCharsets.UTF_8);
    if (args[0].equals("dynamic")) {
      dynamic(records);
    } else {
      JsonObject mapping = JsonParser.parseString(
          new String(Files.readAllBytes(Paths.get(args[0])), StandardCharsets.UTF_8)).getAsJsonObject();
      JsonObject mappings = mapping.has("mappings") ? mapping.getAsJsonObject("mappings") : mapping;
      readProperties(mappings.getAsJsonObject("properties"), "");
    }

    Analyzer analyzer = new MappingAnalyzer();
    ByteBuffersDirectory dir = new ByteBuffersDirectory();
    try (IndexWriter writer = new IndexWriter(dir, new IndexWriterConfig(analyzer))) {
      for (String line : records) {
        if (line.trim().isEmpty()) continue;
        writer.addDocument(document(JsonParser.parseString(line).getAsJsonObject()));
      }
      writer.forceMerge(1);
    }
    IndexSearcher searcher = new IndexSearcher(DirectoryReader.open(dir));
    long now = Long.parseLong(args[3]);
    StringBuilder out = new StringBuilder();
    for (String query : Files.readAllLines(Paths.get(args[2]), StandardCharsets.UTF_8)) {
      try {
        Query q = new Reference(analyzer, now).parse(query);
        out.append(q == null ? 0 : searcher.count(q)).append('\n');
      } catch (ParseException | TokenMgrError | BooleanQuery.TooManyClauses e) {
        out.append("ERROR ").append(e.getMessage().replace('\n', ' ')).append('\n');
      }
    }
    System.out.print(out);
  }
}
